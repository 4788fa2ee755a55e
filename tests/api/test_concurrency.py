"""Invariant 1 through the REST API: 50 clients resuming and creating in one context at once.

Each thread has its own database connection (Django opens one per thread) and closes
it when done; every request must answer 2xx and the context must end with one active.
"""

import threading

import pytest
from django.db import connection

from chat import services
from chat.models import ChatSession

from .conftest import bearer_client

CLIENTS = 50
JOIN_TIMEOUT = 90


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("context", ["general", "run"])
def test_fifty_concurrent_resumes_and_creates_keep_one_active(user, run, context):
    scope = {"run_id": run.pk} if context == "run" else {}
    body = {"run": run.pk} if context == "run" else {}
    existing = [services.conversation_start(user=user, **scope)[0].pk for _ in range(5)]
    clients = [bearer_client(user) for _ in range(CLIENTS)]
    statuses, done = [], []
    barrier = threading.Barrier(CLIENTS)

    def work(number):
        try:
            client = clients[number]
            barrier.wait(timeout=30)
            if number % 2:
                response = client.post(f"/api/sessions/{existing[number % 5]}/resume/")
            else:
                response = client.post("/api/sessions/", body, format="json")
            statuses.append((response.status_code, response.content[:200]))
            done.append(number)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    assert len(done) == CLIENTS
    assert all(200 <= code < 300 for code, _ in statuses), statuses
    in_context = ChatSession.objects.for_user(user).in_context(
        model_id=run.model_id if scope else None, run_id=run.pk if scope else None
    )
    assert in_context.filter(is_active=True).count() == 1
    assert in_context.count() == 5 + CLIENTS // 2
