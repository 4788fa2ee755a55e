"""The sidebar's reads: each group's first sessions, and the further pages of one group.

Every group (general, each model with its runs' conversations, the detached) shows its
first sessions pinned first, then by most recent activity, the newest id first between
equals; the list is in that order too. The results are checked against the rule applied in
Python to every one of the user's sessions, for a user with many groups, pinned, archived
and tagged conversations, ties of activity, and a deleted model and run; the sidebar takes
two queries (the sessions, their tags) however many conversations and groups there are.
"""

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from chat import selectors, services
from chat.models import ChatSession
from models_app import services as model_services
from tests.factories import ChatSessionFactory, ModelFactory, RunFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def group_of(session) -> int:
    if session.detached_label:
        return selectors.GROUP_DETACHED
    return session.model_id or selectors.GROUP_GENERAL


def in_sidebar_order(sessions) -> list:
    return sorted(sessions, key=lambda s: (s.pinned, s.activity_at, s.pk), reverse=True)


def expected(user, *, per_group: int, archived: bool = False, tag: str | None = None):
    """Return the rule's (id, group) of the sidebar, from all the user's sessions."""
    sessions = ChatSession.objects.filter(user=user, archived=archived)
    if tag is not None:
        sessions = sessions.filter(tags__name=tag)
    shown, taken = [], Counter()
    for session in in_sidebar_order(sessions):
        key = group_of(session)
        if taken[key] < per_group:
            taken[key] += 1
            shown.append((session.pk, key))
    return shown


def sidebar(user, **kwargs):
    return [(s.pk, s.group_key) for s in selectors.sidebar_sessions(user=user, **kwargs)]


def conversations(user, count: int, *, model=None, run=None, start: int = 0, tags=()):
    """Create ``count`` conversations, the i-th ``i`` minutes old (each third shares the
    time of the one before: ties), every 7th pinned, every 5th archived."""
    made = []
    for i in range(start, start + count):
        minutes = i - 1 if i % 3 == 2 else i
        session = ChatSessionFactory(
            user=user,
            model=model or (run.model if run else None),
            run=run,
            pinned=i % 7 == 0,
            archived=i % 5 == 0,
            activity_at=NOW - timedelta(minutes=minutes),
        )
        if tags and i % 2 == 0:
            services.conversation_update(user=user, session_id=session.pk, tags=list(tags))
        made.append(session)
    return made


@pytest.fixture
def many_groups(user, other_user):
    """A user with general conversations, three models (one run each), a deleted model and
    a deleted run; another user with a model and conversations of their own."""
    models = [ModelFactory(owner=user, name=f"Model {n}") for n in range(3)]
    conversations(user, 12, tags=["work"])
    for n, model in enumerate(models):
        conversations(user, 5, model=model, start=20 * n + 1, tags=["work"] if n else ())
        conversations(user, 4, run=RunFactory(model=model), start=20 * n + 7)
    gone_model = ModelFactory(owner=user, name="Gone")
    conversations(user, 4, model=gone_model, start=3)
    gone_run = RunFactory(model=models[0])
    conversations(user, 4, run=gone_run, start=5, tags=["work"])
    model_services.model_delete(user=user, model_id=gone_model.pk)
    model_services.run_delete(user=user, run_id=gone_run.pk)
    theirs = ModelFactory(owner=other_user)
    conversations(other_user, 6)
    conversations(other_user, 6, model=theirs, tags=["work"])
    return models


@pytest.mark.parametrize("per_group", [1, 3, 30])
@pytest.mark.parametrize("archived", [False, True])
def test_each_group_shows_its_first_sessions_in_sidebar_order(
    user, many_groups, per_group, archived
):
    shown = sidebar(user, per_group=per_group, archived=archived)
    assert shown == expected(user, per_group=per_group, archived=archived)
    keys = {key for _, key in shown}
    if not archived:
        assert {selectors.GROUP_GENERAL, selectors.GROUP_DETACHED} <= keys
        assert {model.pk for model in many_groups} <= keys


def test_a_deleted_models_and_a_deleted_runs_conversations_are_detached(user, many_groups):
    detached = [
        s for s in selectors.sidebar_sessions(user=user) if s.group_key == selectors.GROUP_DETACHED
    ]
    labels = {s.detached_label.split(" (")[-1] for s in detached}
    assert labels == {"deleted model)", "deleted run)"}
    assert any(s.model_id == many_groups[0].pk for s in detached)  # a deleted run's keep it


def test_the_tag_filter_keeps_each_groups_first_sessions_carrying_it(user, many_groups):
    for per_group in (1, 2, 30):
        shown = sidebar(user, per_group=per_group, tag="work")
        assert shown == expected(user, per_group=per_group, tag="work")
        assert shown
    assert sidebar(user, tag="work", archived=True) == expected(
        user, per_group=30, tag="work", archived=True
    )


def test_the_sidebar_brings_sessions_and_tags_in_two_queries_however_many_groups(
    user, many_groups, django_assert_num_queries
):
    with django_assert_num_queries(2):
        few = selectors.sidebar_sessions(user=user, per_group=3)
        assert all(isinstance(s.tag_names(), list) for s in few)
    for _ in range(6):
        model = ModelFactory(owner=user)
        conversations(user, 5, model=model, tags=["work"])
        conversations(user, 3, run=RunFactory(model=model))
    conversations(user, 20, start=100)
    with django_assert_num_queries(2):
        many = selectors.sidebar_sessions(user=user, per_group=3)
        assert all(isinstance(s.tag_names(), list) for s in many)
    assert len({s.group_key for s in many}) == len({s.group_key for s in few}) + 6
    with django_assert_num_queries(2):
        selectors.sidebar_sessions(user=user, per_group=3, tag="work")


def test_a_user_sees_none_of_another_users_sessions_nor_groups(user, other_user, many_groups):
    mine = set(ChatSession.objects.filter(user=user).values_list("pk", flat=True))
    assert {pk for pk, _ in sidebar(user, per_group=100)} <= mine
    assert {pk for pk, _ in sidebar(user, per_group=100, tag="work")} <= mine
    assert sidebar(other_user, per_group=100) == expected(other_user, per_group=100)


def test_a_user_with_no_conversations_has_an_empty_sidebar(user, django_assert_num_queries):
    ModelFactory(owner=user)
    with django_assert_num_queries(1):
        assert selectors.sidebar_sessions(user=user) == []


@pytest.mark.parametrize("archived", [False, True])
def test_the_pages_of_a_group_continue_it_where_the_sidebar_left_it(
    user, many_groups, archived, django_assert_max_num_queries
):
    per_group = 2
    first = selectors.sidebar_sessions(user=user, per_group=per_group, archived=archived)
    groups = {
        selectors.GROUP_GENERAL: "general",
        selectors.GROUP_DETACHED: "detached",
        **{model.pk: f"model-{model.pk}" for model in many_groups},
    }
    everything = expected(user, per_group=10_000, archived=archived)
    for key, name in groups.items():
        shown = [s.pk for s in first if s.group_key == key]
        offset, has_more = per_group, len(shown) == per_group
        while has_more:
            with django_assert_max_num_queries(2):  # the page, its tags (if any)
                rows, has_more = selectors.sidebar_group_page(
                    user=user, group=name, offset=offset, limit=per_group, archived=archived
                )
            shown += [s.pk for s in rows]
            offset += per_group
        assert shown == [pk for pk, group in everything if group == key], name
