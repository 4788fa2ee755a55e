"""A process asked a reply's writer for the reply so far twice (a late ``started`` and a
new watcher's ``request_watch`` raced): the second snapshot repeats what its feed has and
must not show the watchers their reply again from the start (tests/chat/test_cross_process.py
saw it under load: a second token event at offset 0)."""

from chat.streaming import events
from chat.streaming.feeds import Feed
from chat.streaming.relay import Relay

SESSION = "5f0c2b7e-6a1d-4c3e-9b1a-2d4e6f8a0b1c"


class Engine:
    def __init__(self):
        self.feeds = {}
        self.generations = {}


class Watcher:
    def __init__(self):
        self.seen = []

    def deliver(self, event):
        self.seen.append((event.kind, event.body.get("offset"), event.body.get("content")))


def relayed(relay, event):
    relay._dispatch(
        {"type": "parlor.event", "session": SESSION, "event": event.body, "origin": "writer"}
    )


def watched():
    engine = Engine()
    feed = engine.feeds[SESSION] = Feed(SESSION)
    watcher = Watcher()
    feed.attach(watcher)
    return Relay(engine, layer=None), feed, watcher


def test_a_second_snapshot_of_the_same_text_is_not_shown_again():
    relay, feed, watcher = watched()
    relayed(relay, events.token(SESSION, 7, "Hello ", 0))
    relayed(relay, events.token(SESSION, 7, "world", 6))
    relayed(relay, events.token(SESSION, 7, "Hello world", 0))  # the repeat
    relayed(relay, events.token(SESSION, 7, "!", 11))
    assert watcher.seen == [("token", 0, "Hello "), ("token", 6, "world"), ("token", 11, "!")]
    assert feed.reply.text() == "Hello world!"


def test_a_replay_that_differs_is_still_passed_on():
    relay, feed, watcher = watched()
    relayed(relay, events.token(SESSION, 7, "Hello ", 0))
    relayed(relay, events.token(SESSION, 7, "Help", 0))  # not what the feed has: a replay
    assert watcher.seen[-1] == ("token", 0, "Help")
    assert feed.reply.text() == "Help"


def test_the_first_snapshot_of_another_reply_is_passed_on():
    relay, feed, watcher = watched()
    relayed(relay, events.token(SESSION, 7, "Hello", 0))
    relayed(
        relay, events.done(SESSION, 7, html="<p>Hello</p>", status="complete", usage=None, length=5)
    )
    relayed(relay, events.token(SESSION, 9, "Hello", 0))  # the next reply, same words
    assert watcher.seen[-1] == ("token", 0, "Hello")
