"""``GET /metrics``: Prometheus text format, for whoever holds METRICS_TOKEN (SPEC 4.6).

With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set before they start: ``make
serve-prod``, the systemd unit), each process writes its values to files in that folder and
a scrape through any worker adds up every worker of the host: counters and histograms of
workers that have exited included (they never go back), the gauges of live workers only.
Without it, the answer is this process's own registry.
"""

import glob
import hmac
import os
import re

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from accounts.tokens import bearer_token

# prometheus_client names a process's files of "live" gauges gauge_live<mode>_<pid>.db.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def metrics(request):
    """Answer the metrics of every worker of this host, or 403 without the right token."""
    if not _token_matches(request.headers.get("Authorization")):
        return HttpResponse(
            "403 Forbidden: GET /metrics needs Authorization: Bearer <METRICS_TOKEN>.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        forget_dead_workers(directory)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _token_matches(header: str | None) -> bool:
    expected = settings.METRICS_TOKEN
    given = bearer_token(header)
    if not expected or given is None:
        return False  # no METRICS_TOKEN set: nobody may read the metrics
    return hmac.compare_digest(given.encode(), expected.encode())


def forget_dead_workers(directory: str) -> list[int]:
    """Drop the live gauges of workers that are gone; return their process ids.

    A worker killed outright cannot remove its own files, and its last values of
    ``parlor_streams_active`` or ``parlor_websockets_open`` would count for ever. The
    workers of a host share its process ids, so whichever serves the scrape can tell.
    """
    gone = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.fullmatch(os.path.basename(path))
        if match and not _alive(int(match.group(1))):
            gone.add(int(match.group(1)))
    for pid in gone:
        mark_process_dead(pid, directory)
    return sorted(gone)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True
