"""Run tools: function calls the LLM may make in a run conversation (SPEC 5.3).

Each tool reads only the run's own data; the engine runs them server-side in a thread.
"""

import json
import math
import re
from collections import defaultdict
from decimal import Decimal

from models_app.models import Run, Trade

TRADES_LIMIT_MAX = 100
SYMBOL = re.compile(r"[A-Za-z0-9.\-]{1,20}")
RESULT_SHORT_CHARS = 300

SPECS = [
    {
        "type": "function",
        "function": {
            "name": "get_run_summary",
            "description": "Summary of this run: status, dates, capital, equity, P&L, trades.",
            "parameters": {"type": "object", "properties": {}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_trades",
            "description": "Trades of this run, most recent first.",
            "parameters": {
                "type": "object",
                "properties": {
                    "symbol": {"type": "string", "description": "Only this symbol."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": TRADES_LIMIT_MAX},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_open_positions",
            "description": "Open positions of this run: net quantity per symbol.",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]

STATUS_TEXT = {
    "get_run_summary": "Looking up the run summary…",
    "get_trades": "Looking up trades…",
    "get_open_positions": "Looking up open positions…",
}


def _number(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def run_summary(*, run: Run) -> dict:
    """Return the facts of a run."""
    trades = Trade.objects.filter(run=run)
    realized = sum((t.realized_pnl for t in trades), Decimal("0"))
    return {
        "run": run.pk,
        "model": run.model.name,
        "status": run.status,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "starting_capital": _number(run.starting_capital),
        "ending_equity": _number(run.ending_equity),
        "pnl": _number(run.pnl),
        "trades": trades.count(),
        "realized_pnl": _number(realized),
    }


def trades(*, run: Run, symbol: str | None = None, limit: int = 20) -> list[dict]:
    """Return the run's trades, most recent first, optionally for one symbol."""
    qs = Trade.objects.filter(run=run)
    if symbol:
        qs = qs.filter(symbol__iexact=symbol)
    limit = max(1, min(limit, TRADES_LIMIT_MAX))
    return [
        {
            "symbol": t.symbol,
            "side": t.side,
            "quantity": _number(t.quantity),
            "price": _number(t.price),
            "executed_at": t.executed_at.isoformat(),
            "realized_pnl": _number(t.realized_pnl),
        }
        for t in qs.order_by("-executed_at", "-id")[:limit]
    ]


def open_positions(*, run: Run) -> list[dict]:
    """Return the net quantity per symbol from the run's trades (non-zero only)."""
    net: dict[str, Decimal] = defaultdict(Decimal)
    for symbol, side, quantity in Trade.objects.filter(run=run).values_list(
        "symbol", "side", "quantity"
    ):
        net[symbol] += quantity if side == Trade.Side.BUY else -quantity
    return [
        {"symbol": symbol, "net_quantity": _number(quantity)}
        for symbol, quantity in sorted(net.items())
        if quantity != 0
    ]


class BadArguments(ValueError):
    """Arguments the model sent that a tool cannot take; the model is told why."""


def _limit(value) -> int:
    if value is None:
        return 20
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadArguments("limit must be a whole number.")
    if not math.isfinite(value) or value != int(value):
        raise BadArguments("limit must be a whole number.")
    if not 1 <= value <= TRADES_LIMIT_MAX:
        raise BadArguments(f"limit must be from 1 to {TRADES_LIMIT_MAX}.")
    return int(value)


def _symbol(value) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not SYMBOL.fullmatch(value):
        raise BadArguments("symbol must be a ticker of at most 20 letters, digits, '.' or '-'.")
    return value


def run_tool(*, run_id: int, name: str, arguments: dict | None) -> str:
    """Run one tool over a run's data; return its JSON result (errors are results too).

    Arguments are checked before they reach the database (finite numbers in range, a
    plausible ticker): a bad one is an error the model reads, not a failed reply.
    """
    run = Run.objects.select_related("model").filter(pk=run_id).first()
    if run is None:
        return json.dumps({"error": "The run no longer exists."})
    if not isinstance(arguments, dict):
        return json.dumps({"error": "Bad arguments: they must be a JSON object."})
    try:
        if name == "get_run_summary":
            result = run_summary(run=run)
        elif name == "get_trades":
            result = trades(
                run=run,
                symbol=_symbol(arguments.get("symbol")),
                limit=_limit(arguments.get("limit")),
            )
        elif name == "get_open_positions":
            result = open_positions(run=run)
        else:
            result = {"error": f"Unknown tool {name[:64]!r}."}
    except BadArguments as exc:
        result = {"error": f"Bad arguments: {exc}"}
    return json.dumps(result)


def short(result: str) -> str:
    """Return a tool result cut to what is kept on the message."""
    return result if len(result) <= RESULT_SHORT_CHARS else result[: RESULT_SHORT_CHARS - 1] + "…"
