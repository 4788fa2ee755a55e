"""seed_demo's conversations about the demo run state what its seeded trades say.

Every figure the run's demo conversations state (counts, symbols, times, dollar amounts)
is computed here from the stored trades and looked for in the text, and every dollar
amount and ticker in the text must be one of those: the story and the data cannot drift
apart again.
"""

import re
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from chat.models import ChatSession, Message
from models_app.models import Model, Run

pytestmark = pytest.mark.django_db

WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def money(value: Decimal, *, sign: bool = False) -> str:
    text = f"${abs(value):,.2f}"
    if sign:
        return ("+" if value >= 0 else "-") + text
    return text


def answers(session: ChatSession) -> dict[str, str]:
    """Return each question of a conversation with the assistant's answer to it."""
    messages = list(session.messages.order_by("id"))
    return {
        question.content: reply.content
        for question, reply in zip(messages[::2], messages[1::2], strict=True)
        if question.role == Message.Role.USER and reply.role == Message.Role.ASSISTANT
    }


@pytest.fixture
def seeded():
    call_command("seed_demo", stdout=StringIO())
    run = Run.objects.get()
    said = {}
    for session in ChatSession.objects.filter(run=run):
        said |= answers(session)
    return run, list(run.trades.order_by("executed_at", "id")), said


def test_the_run_conversations_state_the_numbers_of_the_seeded_trades(seeded):
    run, trades, said = seeded
    buys = [t for t in trades if t.side == "buy"]
    sells = [t for t in trades if t.side == "sell"]
    pnl = defaultdict(Decimal)
    trips = defaultdict(list)
    for trade in sells:
        pnl[trade.symbol] += trade.realized_pnl
        trips[trade.symbol].append(trade.realized_pnl)
    total = sum(pnl.values())
    symbols = sorted(pnl)

    summary = said["Summarize this run."]
    assert f"{len(trades)} trades ({len(sells)} round trips)" in summary
    listed = ", ".join(symbols[:-1]) + f" and {symbols[-1]}"
    assert f"{WORDS[len(symbols)]} symbols, {listed}" in summary
    first, last = trades[0].executed_at, trades[-1].executed_at
    assert f"between {first:%H:%M} and {last:%H:%M} UTC on {first:%Y-%m-%d}" in summary
    assert f"realized P&L is {money(total, sign=True)}" in summary
    assert run.ending_equity - run.starting_capital == total
    assert (
        f"equity went from {money(run.starting_capital)} to {money(run.ending_equity)}" in summary
    )

    best = max(pnl, key=pnl.get)
    most = said["Which symbol made the most?"]
    assert most.startswith(f"{best}: {money(pnl[best], sign=True)} over {len(trips[best])} round")
    for symbol in symbols:
        if symbol != best and pnl[symbol] > 0:
            assert f"{symbol} {money(pnl[symbol], sign=True)}" in most or (
                f"{symbol} made {money(pnl[symbol], sign=True)}" in most
            )

    losers = [symbol for symbol in symbols if pnl[symbol] < 0]
    assert losers == ["TSLA"]
    losing = said["Any losing symbols?"]
    tsla = trips["TSLA"]
    winners = sum(1 for value in tsla if value > 0)
    assert (
        f"TSLA lost {money(pnl['TSLA'])} over {len(tsla)} round trips "
        f"({WORDS[winners]} winner, {WORDS[len(tsla) - winners]} losers)" in losing
    )
    assert f"worst trade lost {money(min(tsla))}" in losing
    assert min(t.realized_pnl for t in trades) == min(tsla)  # TSLA's worst is the run's worst
    risk = (run.starting_capital * Decimal("0.005")).quantize(Decimal("0.01"))
    assert f"0.5% risk rule ({money(risk)} of {money(run.starting_capital)})" in losing
    assert -min(tsla) <= risk
    assert f"other {WORDS[len(symbols) - 1]} symbols were positive" in losing

    flat = said["Are there open positions left?"]
    assert f"each of the {len(buys)} buys was closed by a sell of the same quantity" in flat
    held = defaultdict(Decimal)
    for trade in trades:
        held[trade.symbol] += trade.quantity if trade.side == "buy" else -trade.quantity
    assert set(held.values()) == {0}

    # Nothing else is claimed: every amount and ticker in the text is one of the figures.
    text = " ".join(said.values())
    figures = {money(value) for value in [total, run.starting_capital, run.ending_equity, risk]}
    figures |= {money(value) for value in pnl.values()} | {money(min(tsla))}
    assert set(re.findall(r"\$[\d,]+\.\d\d", text)) <= figures
    assert set(re.findall(r"\b[A-Z]{3,5}\b", text)) - {"UTC"} <= set(symbols)


def test_the_demo_run_keeps_the_scalpers_rules_and_its_conversation_its_configuration(seeded):
    run, trades, said = seeded
    scalper = Model.objects.get(name="Momentum Scalper")
    assert run.model == scalper
    # "Trade only the first two hours after the open" (9:30 ET is 14:30 UTC in January).
    assert run.started_at <= trades[0].executed_at
    assert trades[-1].executed_at <= run.ended_at <= run.started_at + timedelta(hours=2)
    # The model conversation states its configuration.
    session = ChatSession.objects.get(model=scalper, run=None, title="Scalper configuration")
    configured = answers(session)["What is this model configured for?"]
    assert f"${scalper.buying_power:,.0f} buying power" in configured
    assert "market, limit and stop orders" in configured
    assert scalper.allowed_order_types == ["market", "limit", "stop"]
    assert scalper.allow_shorting and "shorting is allowed" in configured
