"""GET /metrics: only with METRICS_TOKEN; with several processes, all of them, alive or not.

The multiprocess case runs real processes that count into a shared folder, as the workers
of ``make serve-prod`` do (tests/deploy shows it through nginx).
"""

import subprocess
import sys

import pytest
from django.conf import settings as django_settings

from chat import metrics

TOKEN = "a-metrics-token-for-tests"

COUNT = """
import os
from chat import metrics
metrics.REPLIES.labels("complete").inc({complete})
metrics.STREAMS_ACTIVE.inc({streams})
metrics.TTFT.observe(0.2)
print(os.getpid())
"""


def samples(body: bytes) -> dict[str, float]:
    found = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", f"Bearer not-{TOKEN}", f"Basic {TOKEN}", f"Bearer {TOKEN} extra"],
)
def test_metrics_refuse_a_request_without_the_token(client, metrics_token, header):
    headers = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 403
    assert b"parlor_" not in response.content


def test_without_metrics_token_set_nobody_may_read_them(client, settings):
    settings.METRICS_TOKEN = ""
    for header in ("Bearer ", "Bearer x", "Bearer  "):
        assert client.get("/metrics", HTTP_AUTHORIZATION=header).status_code == 403


def test_metrics_answer_the_prometheus_text_format_with_the_token(
    client, metrics_token, monkeypatch
):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics.REPLIES.labels("complete").inc()
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    found = samples(response.content)
    assert found['parlor_replies_total{status="complete"}'] >= 1
    for name in (
        "parlor_streams_active",
        "parlor_websockets_open",
        "parlor_ttft_seconds_count",
        "parlor_reply_duration_seconds_count",
        "parlor_tokens_relayed_total",
        "parlor_db_pool_connections_in_use",
    ):
        assert name in found


def count_in_a_process(directory, *, complete: int, streams: int) -> int:
    """Count in a process of its own that then exits; return its process id."""
    result = subprocess.run(
        [sys.executable, "-c", COUNT.format(complete=complete, streams=streams)],
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"},
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(result.stdout)


def test_one_scrape_adds_up_every_process_and_forgets_the_gauges_of_dead_ones(
    client, metrics_token, monkeypatch, tmp_path
):
    count_in_a_process(tmp_path, complete=2, streams=1)
    count_in_a_process(tmp_path, complete=3, streams=1)
    assert len(list(tmp_path.glob("gauge_livesum_*.db"))) == 2
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    found = samples(response.content)
    # Counters of processes that have exited stay in the totals; the streams they had
    # open do not: the processes are gone.
    assert found['parlor_replies_total{status="complete"}'] == 5
    assert found["parlor_ttft_seconds_count"] == 2
    assert found.get("parlor_streams_active", 0) == 0
    assert list(tmp_path.glob("gauge_livesum_*.db")) == []
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
