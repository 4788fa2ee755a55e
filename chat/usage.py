"""Tokens used, per day and LLM, and the daily quota (SPEC 4.6, "Usage and limits").

What counts: the prompt and completion tokens the provider reports for the replies a
user asks for (sends, edits, regenerations), added to ``UsageDay(user, UTC day, LLM)``
when the reply ends (``services.reply_finish``, one upsert with the reply's end). The
titles and summaries Parlor makes on its own are not counted: the user did not ask for
them and cannot avoid them.

The quota: QUOTA_TOKENS_PER_DAY, or the user's own ``quota_tokens_per_day`` (staff set
it in the admin), in tokens per UTC day. Once the day's usage reaches it, sending is
refused (``QuotaExceeded``, 429) until the next UTC midnight. It is checked when a
message is sent: a reply already started finishes, so the last reply of a day may take
the usage past the limit.

Reads for ``GET /api/usage/`` and the settings page's chart (``usage_chart``: a
server-rendered SVG, no script) are here too.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.utils import timezone

from . import metrics, sql
from .exceptions import QuotaExceeded
from .models import UsageDay

DAYS_MAX = 365
CHART_DAYS = 30
# Mid-tone colours, legible on the light and the dark theme; an LLM keeps its colour
# in the chart, its legend and its table rows.
PALETTE = ("#10a37f", "#6366f1", "#f59e0b", "#ec4899", "#0ea5e9", "#8b5cf6")


def today(now: datetime | None = None) -> date:
    """Return the current UTC day (usage and the quota count in UTC days)."""
    return (now or timezone.now()).astimezone(UTC).date()


def next_reset(now: datetime | None = None) -> datetime:
    """Return when the quota resets: the next UTC midnight."""
    return datetime.combine(today(now) + timedelta(days=1), time.min, tzinfo=UTC)


def daily_limit(own_limit: int | None) -> int | None:
    """Return the tokens a day a user may spend: their own limit, else the setting's
    (None: no limit)."""
    return own_limit if own_limit is not None else settings.QUOTA_TOKENS_PER_DAY


def check_quota(*, user_id: int, own_limit: int | None) -> None:
    """Refuse a send (QuotaExceeded) when the user's tokens of today reach their limit.

    ``own_limit`` is the user's ``quota_tokens_per_day`` (``sql.lock_sender`` reads it).
    No query when no limit applies; else one read of today's usage rows.
    """
    limit = daily_limit(own_limit)
    if limit is None:
        return
    now = timezone.now()
    if sql.tokens_used(user_id=user_id, day=today(now)) < limit:
        return
    resets_at = next_reset(now)
    metrics.REFUSALS.labels(QuotaExceeded.code).inc()
    retry_after = max(1, int((resets_at - now).total_seconds() + 0.999))
    raise QuotaExceeded(limit=limit, resets_at=resets_at, retry_after=retry_after)


def quota_state(*, user) -> dict | None:
    """Return ``{"tokens_per_day", "used_today", "resets_at"}`` for ``user``, or None
    when no limit applies to them."""
    limit = daily_limit(user.quota_tokens_per_day)
    if limit is None:
        return None
    now = timezone.now()
    return {
        "tokens_per_day": limit,
        "used_today": sql.tokens_used(user_id=user.pk, day=today(now)),
        "resets_at": next_reset(now),
    }


def usage_days(*, user, days: int) -> list[dict]:
    """Return ``user``'s usage of the last ``days`` UTC days (today included), one row
    per day and LLM with tokens, oldest first: ``{"date", "llm", "prompt_tokens",
    "completion_tokens"}``."""
    first = today() - timedelta(days=days - 1)
    return list(
        UsageDay.objects.filter(user=user, date__gte=first)
        .order_by("date", "llm")
        .values("date", "llm", "prompt_tokens", "completion_tokens")
    )


def usage_report(*, user, days: int) -> dict:
    """Return what ``GET /api/usage/`` answers: the days' rows and the quota."""
    return {"days": usage_days(user=user, days=days), "quota": quota_state(user=user)}


# The chart ---------------------------------------------------------------------------

# The SVG's coordinates (viewBox); it scales to the width of its box.
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 24, 12, 28


@dataclass(frozen=True)
class Bar:
    """One LLM's part of one day's bar."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str


def _nice_ceiling(value: int) -> int:
    """Return the smallest 1, 2 or 5 times a power of ten at or above ``value`` (≥ 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def _tokens(value: int) -> str:
    """Return a token count as an axis shows it: 950, 12k, 1.5M."""
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return str(value)


def usage_chart(*, user, days: int = CHART_DAYS) -> dict:
    """Return the context of ``chat/partials/_usage.html``: ``user``'s tokens per day of
    the last ``days`` days as stacked bars (one colour per LLM), the same numbers as
    table rows, the totals and the quota. One query for the rows (and one for today's
    usage when a quota applies)."""
    rows = usage_days(user=user, days=days)
    last = today()
    first = last - timedelta(days=days - 1)
    llms = sorted({row["llm"] for row in rows})
    colours = {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(llms)}
    per_day: dict[date, list[dict]] = {}
    for row in rows:
        row["total"] = row["prompt_tokens"] + row["completion_tokens"]
        row["colour"] = colours[row["llm"]]
        per_day.setdefault(row["date"], []).append(row)
    day_totals = {day: sum(r["total"] for r in parts) for day, parts in per_day.items()}
    top = _nice_ceiling(max(day_totals.values(), default=0) or 1)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    band = plot_width / days
    bar_width = round(band * 0.7, 2)
    bars, labels = [], []
    for index in range(days):
        day = first + timedelta(days=index)
        x = round(LEFT + index * band + (band - bar_width) / 2, 2)
        base = TOP + plot_height
        for part in per_day.get(day, []):
            height = plot_height * part["total"] / top
            base -= height
            bars.append(
                Bar(
                    x=x,
                    y=round(base, 2),
                    width=bar_width,
                    height=round(height, 2),
                    colour=part["colour"],
                    label=f"{day:%b} {day.day}: {part['llm']}, {part['total']:,} tokens",
                )
            )
        if index % 7 == (days - 1) % 7:  # today, and every seventh day before it
            labels.append(
                {"x": round(LEFT + (index + 0.5) * band, 2), "text": f"{day:%b} {day.day}"}
            )
    grid = [
        {"y": round(TOP + plot_height * (1 - share), 2), "text": _tokens(int(top * share))}
        for share in (0, 0.5, 1)
    ]
    total = sum(day_totals.values())
    busiest = max(day_totals, key=day_totals.get, default=None)
    if busiest is None:
        summary = f"No tokens used in the last {days} days."
    else:
        summary = (
            f"{total:,} tokens in the last {days} days with {len(llms)} "
            f"LLM{'s' if len(llms) != 1 else ''}; the busiest day was {busiest:%B} {busiest.day} "
            f"with {day_totals[busiest]:,}."
        )
    return {
        "days": days,
        "first": first,
        "last": last,
        # The table: newest day first, its LLMs in the legend's order.
        "rows": sorted(rows, key=lambda row: (-row["date"].toordinal(), row["llm"])),
        "legend": [{"llm": name, "colour": colours[name]} for name in llms],
        "bars": bars,
        "labels": labels,
        "grid": grid,
        "total": total,
        "prompt_total": sum(r["prompt_tokens"] for r in rows),
        "completion_total": sum(r["completion_tokens"] for r in rows),
        "summary": summary,
        "quota": quota_state(user=user),
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "axis_x": LEFT - 6,
        "right": WIDTH - RIGHT,
        "baseline": TOP + plot_height,
        "label_y": HEIGHT - 8,
    }
