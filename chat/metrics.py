"""Prometheus metrics of the chat (SPEC 4.6 "Production"): what an operator watches.

With several worker processes, prometheus_client's multiprocess mode keeps each
process's values in files under PROMETHEUS_MULTIPROC_DIR (set by ``make serve-prod`` and
the systemd unit before the workers start), and one scrape of ``/metrics`` through any
worker adds them all up. Without it, each process reports its own.

Every metric is named here, once; the README lists them.
"""

from prometheus_client import Counter, Gauge, Histogram

REPLIES = Counter(
    "parlor_replies_total",
    "Replies ended, by how they ended (complete, stopped, error).",
    ["status"],
)
STREAMS_ACTIVE = Gauge(
    "parlor_streams_active",
    "Replies being written now.",
    multiprocess_mode="livesum",
)
SOCKETS_OPEN = Gauge(
    "parlor_websockets_open",
    "WebSocket connections open now.",
    multiprocess_mode="livesum",
)
TTFT = Histogram(
    "parlor_ttft_seconds",
    "Time from a stored message to the first token of its reply sent to its watchers.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REPLY_SECONDS = Histogram(
    "parlor_reply_duration_seconds",
    "Time from a stored message to the end of its reply.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TOKENS = Counter(
    "parlor_tokens_relayed_total",
    "Completion tokens relayed to watchers (as the LLM counts them).",
)
UPSTREAM_ERRORS = Counter(
    "parlor_upstream_errors_total",
    "Replies the LLM failed, by kind (unreachable, timeout, status, malformed, broken).",
    ["kind"],
)
REFUSALS = Counter(
    "parlor_refusals_total",
    "Requests refused for a limit: rate_limited, quota_exceeded, generation_in_progress.",
    ["code"],
)
DB_POOL_IN_USE = Gauge(
    "parlor_db_pool_connections_in_use",
    "PostgreSQL connections checked out of this process's pool, at the last scrape.",
    multiprocess_mode="livesum",
)
