"""The embedded channel layer delivers like Channels' own and still expires messages."""

import asyncio

from chat.layers import RationedInMemoryChannelLayer


async def test_group_messages_reach_every_member_in_order():
    layer = RationedInMemoryChannelLayer()
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("chat.session.x", first)
    await layer.group_add("chat.session.x", second)
    for n in range(3):
        await layer.group_send("chat.session.x", {"type": "token", "n": n})
    for channel in (first, second):
        got = [(await layer.receive(channel))["n"] for _ in range(3)]
        assert got == [0, 1, 2]


async def test_expired_messages_are_still_swept_once_the_interval_passes():
    layer = RationedInMemoryChannelLayer(expiry=0.01, sweep_interval=0.05)
    stale, live = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", stale)
    await layer.send(stale, {"type": "old"})
    await asyncio.sleep(0.1)
    await layer.send(live, {"type": "new"})
    assert (await layer.receive(live))["type"] == "new"  # this receive sweeps
    assert stale not in layer.channels
    assert stale not in layer.groups.get("g", {})


async def test_between_sweeps_expired_messages_wait_for_the_next_sweep():
    layer = RationedInMemoryChannelLayer(expiry=0.01, sweep_interval=60)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "first"})
    assert (await layer.receive(channel))["type"] == "first"  # sweeps; next one in 60 s
    await layer.send(channel, {"type": "old"})
    await asyncio.sleep(0.05)
    await layer.group_send("nobody", {"type": "x"})  # would have swept; rationed
    assert channel in layer.channels
