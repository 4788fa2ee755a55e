"""Invariant 1 under real concurrency: many connections switching and starting at once.

Each worker thread has its own database connection (Django opens one per thread) and
closes it when done. Every call must succeed from the caller's view, and each context
must end with exactly one active session.
"""

import random
import threading
import uuid

import pytest
from django.db import connection

from chat import services
from chat.models import ChatSession
from tests.factories import ModelFactory, RunFactory, UserFactory

JOIN_TIMEOUT = 90


def run_workers(*, user, contexts, workers, operations, seed):
    """Run ``operations`` random starts/resumes over ``workers`` threads; return errors.

    Some starts carry a client-chosen id from a small pool (the ephemeral chat's), so that
    several workers start the same conversation at once: one creates it, the others get it.
    """
    ids = {key: [] for key in contexts}
    client_ids = {key: [uuid.uuid4() for _ in range(5)] for key in contexts}
    for key, context in contexts.items():
        for _ in range(3):
            session, _ = services.conversation_start(user=user, **context)
            ids[key].append(session.pk)
    ids_lock = threading.Lock()
    errors = []
    done = []
    per_worker = operations // workers
    barrier = threading.Barrier(workers)

    def work(number):
        rng = random.Random(seed * 1000 + number)
        try:
            barrier.wait(timeout=30)
            for _ in range(per_worker):
                key = rng.choice(sorted(contexts))
                roll = rng.random()
                try:
                    if roll < 0.7:
                        with ids_lock:
                            session_id = rng.choice(ids[key])
                        resumed = services.conversation_resume(user=user, session_id=session_id)
                        assert resumed.pk == session_id
                    elif roll < 0.9:
                        session, created = services.conversation_start(user=user, **contexts[key])
                        assert created
                        with ids_lock:
                            ids[key].append(session.pk)
                    else:
                        client_id = rng.choice(client_ids[key])
                        session, created = services.conversation_start(
                            user=user, session_id=client_id, **contexts[key]
                        )
                        assert session.pk == client_id
                        if created:
                            with ids_lock:
                                ids[key].append(session.pk)
                except Exception as exc:  # every failure the caller would see
                    errors.append(repr(exc))
            done.append(number)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a worker hung (deadlock?)"
    assert sorted(done) == list(range(workers))
    return errors, ids


def active_per_context(user, contexts):
    counts = {}
    for key, context in contexts.items():
        counts[key] = (
            ChatSession.objects.for_user(user)
            .in_context(model_id=context.get("model_id"), run_id=context.get("run_id"))
            .filter(is_active=True)
            .count()
        )
    return counts


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_twenty_workers_switching_in_one_context_keep_one_active_session():
    user = UserFactory()
    contexts = {"general": {}}
    errors, ids = run_workers(user=user, contexts=contexts, workers=20, operations=300, seed=1)
    assert errors == []
    assert active_per_context(user, contexts) == {"general": 1}
    assert ChatSession.objects.for_user(user).count() == len(ids["general"])


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_twenty_workers_across_three_contexts_keep_one_active_session_each():
    user = UserFactory()
    model = ModelFactory(owner=user)
    run = RunFactory(model=model)
    contexts = {
        "general": {},
        "model": {"model_id": model.pk},
        "run": {"model_id": model.pk, "run_id": run.pk},
    }
    errors, _ = run_workers(user=user, contexts=contexts, workers=20, operations=300, seed=2)
    assert errors == []
    assert active_per_context(user, contexts) == {"general": 1, "model": 1, "run": 1}


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_users_switching_at_once_do_not_disturb_each_other():
    users = [UserFactory(), UserFactory()]
    results = {}

    def one_user(index):
        try:
            results[index] = run_workers(
                user=users[index], contexts={"general": {}}, workers=5, operations=60, seed=index
            )[0]
        finally:
            connection.close()

    threads = [threading.Thread(target=one_user, args=(n,), daemon=True) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    assert results == {0: [], 1: []}
    for user in users:
        assert active_per_context(user, {"general": {}}) == {"general": 1}


@pytest.mark.django_db(transaction=True)
def test_a_few_threads_switching_keep_one_active_session_on_any_database():
    user = UserFactory()
    model = ModelFactory(owner=user)
    contexts = {"general": {}, "model": {"model_id": model.pk}}
    errors, _ = run_workers(user=user, contexts=contexts, workers=4, operations=40, seed=3)
    assert errors == []
    assert active_per_context(user, contexts) == {"general": 1, "model": 1}


def send_at_once(*, user, workers, **fields):
    """Call reply_start from ``workers`` threads at the same moment; return what each got."""
    return at_once(
        workers,
        lambda number: services.reply_start(user=user, content="at once", **fields).session.pk,
    )


def at_once(workers, call):
    """Run ``call(number)`` in ``workers`` threads, each on its own database connection, at
    the same moment; return ("sent", its result), ("busy", None) for a refused second
    generation, or ("failed", repr) for anything else the caller would see."""
    from chat.exceptions import GenerationInProgress

    barrier = threading.Barrier(workers)
    outcomes = []

    def work(number):
        try:
            connection.ensure_connection()  # connected before the start, so they overlap
            barrier.wait(timeout=30)
            outcomes.append(("sent", call(number)))
        except GenerationInProgress:
            outcomes.append(("busy", None))
        except Exception as exc:  # anything else the caller would see
            outcomes.append(("failed", repr(exc)))
        finally:
            connection.close()

    threads = [
        threading.Thread(target=work, args=(number,), daemon=True) for number in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a worker hung (deadlock?)"
    return outcomes


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_sends_racing_into_one_conversation_start_exactly_one_reply():
    """The user lock of reply_start: without it, racing sends each start a reply."""
    from chat.models import Message

    user = UserFactory()
    session, _ = services.conversation_start(user=user)
    outcomes = send_at_once(user=user, workers=12, session_id=session.pk)
    assert sorted(kind for kind, _ in outcomes) == ["busy"] * 11 + ["sent"]
    streaming = Message.objects.filter(session=session, status=Message.Status.STREAMING)
    assert streaming.count() == 1
    assert Message.objects.filter(session=session).count() == 2


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_sends_racing_into_a_context_with_no_conversation_make_one():
    """Sends without a conversation id go to the context's active one, made once."""
    user = UserFactory()
    model = ModelFactory(owner=user)
    outcomes = send_at_once(user=user, workers=12, model_id=model.pk)
    assert [kind for kind, _ in outcomes].count("sent") == 1
    assert {kind for kind, _ in outcomes} <= {"sent", "busy"}
    assert ChatSession.objects.for_user(user).count() == 1
    assert active_per_context(user, {"model": {"model_id": model.pk}}) == {"model": 1}
