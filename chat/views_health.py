import asyncio

from channels.layers import get_channel_layer
from django.db import connection
from django.http import JsonResponse


def _channel_layer_answers() -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False

    async def roundtrip():
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.ping"})
        return (await asyncio.wait_for(layer.receive(channel), timeout=2))["type"] == "health.ping"

    try:
        return asyncio.run(roundtrip())
    except Exception:
        return False


def healthz(request):
    """Answer 200 when the database and the channel layer both answer, else 503."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            database = cursor.fetchone()[0] == 1
    except Exception:
        database = False
    channel_layer = _channel_layer_answers()
    ok = database and channel_layer
    return JsonResponse(
        {
            "status": "ok" if ok else "unavailable",
            "database": database,
            "channel_layer": channel_layer,
        },
        status=200 if ok else 503,
    )
