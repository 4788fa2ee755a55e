"""Health probes for load balancers and process managers (SPEC 4.1, 4.6).

``/healthz``: the process is alive (200, no dependency checked: a balancer must not take
every instance out because the database blinked). ``/readyz``: the database and the
channel layer answer and the process is not draining after SIGTERM; else 503.
"""

import asyncio

from channels.layers import get_channel_layer
from django.db import connection
from django.http import JsonResponse

from . import streaming

PROBE_TIMEOUT = 2.0


def healthz(request):
    """Answer 200 while the process is alive."""
    return JsonResponse({"status": "ok"})


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone()[0] == 1
    except Exception:
        return False


async def _channel_layer_answers() -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            # The relay's prefix: channels-redis lets one receive at a time run per real
            # channel (prefix and process); another prefix would wait behind the relay's
            # listener for ever, while this one is served by it.
            channel = await layer.new_channel("parlor.process.")
            await layer.send(channel, {"type": "health.ping"})
            return (await layer.receive(channel))["type"] == "health.ping"
    except Exception:
        return False


async def readyz(request):
    """Answer 200 when this process can take work, else 503 with what is missing."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            database = await streaming.db.run(_database_answers)
    except TimeoutError:
        database = False
    channel_layer = await _channel_layer_answers()
    draining = streaming.draining()
    ok = database and channel_layer and not draining
    body = {
        "status": "ok" if ok else ("draining" if draining else "unavailable"),
        "database": database,
        "channel_layer": channel_layer,
        "draining": draining,
    }
    return JsonResponse(body, status=200 if ok else 503)
