"""Migration 0006: conversations stored before message trees become single paths."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from tests.factories import UserFactory

BEFORE = [("chat", "0005_sidebar_group_indexes")]
AFTER = [("chat", "0006_message_tree")]


@pytest.fixture
def migrator():
    """A migration executor; the database is migrated back to the latest state after."""
    yield MigrationExecutor(connection)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_existing_conversations_become_one_path_each_losing_nothing(migrator):
    executor = migrator
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    session_model = old.get_model("chat", "ChatSession")
    message_model = old.get_model("chat", "Message")
    user = UserFactory()  # accounts' tables are as they are: only chat went back
    start = timezone.now() - timedelta(days=1)
    shapes = {}
    for number in range(2):
        session = session_model.objects.create(
            user_id=user.pk, is_active=number == 0, message_count=4
        )
        rows = []
        for turn in range(2):
            at = start + timedelta(minutes=10 * turn + number)
            question = message_model.objects.create(
                session=session, role="user", content=f"q{turn}", created_at=at
            )
            reply = message_model.objects.create(
                session=session,
                role="assistant",
                content=f"a{turn}",
                reply_to=question,
                created_at=at + timedelta(microseconds=1),
            )
            rows += [question, reply]
        shapes[session.pk] = [(m.pk, m.role, m.content) for m in rows]

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("chat", "Message")
    for session_id, rows in shapes.items():
        stored = list(new.objects.filter(session_id=session_id).order_by("created_at", "id"))
        assert [(m.pk, m.role, m.content) for m in stored] == rows
        assert [m.parent_id for m in stored] == [None] + [m.pk for m in stored[:-1]]
        assert all(m.on_path for m in stored)
