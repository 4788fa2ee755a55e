"""Tags (SPEC 4.6): the user's own labels on their conversations, through the services.

A name is stored lowercased, 1-40 characters, at most 20 per conversation; a new list
replaces the old one whole; bad input changes nothing; another user's tags never meet
yours. The selectors filter by tag and count tags, and the sidebar stays at a constant
number of queries.
"""

import logging
import threading

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat import exports, selectors, services
from chat.exceptions import ConversationNotFound, DomainError
from chat.models import ChatSession, SessionTag
from tests.factories import ModelFactory, UserFactory

pytestmark = pytest.mark.django_db


def start(user, **context):
    return services.conversation_start(user=user, **context)[0]


def tag(user, session, tags):
    return services.conversation_update(user=user, session_id=session.pk, tags=tags)


def stored(session):
    return list(SessionTag.objects.filter(session=session).values_list("name", flat=True))


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (["Work"], ["work"]),
        (["  Deep   Work  "], ["deep work"]),
        (["tab\tand\nnewline"], ["tab and newline"]),
        (["ＷＯＲＫ"], ["work"]),  # full-width letters, NFKC
        (["Été", "ÉTÉ", "été"], ["été"]),
        (["b", "a", "B"], ["a", "b"]),
        (["x" * 40], ["x" * 40]),
        (["🦀 rust"], ["🦀 rust"]),
        ([], []),
    ],
)
def test_tags_are_stored_lowercased_collapsed_and_once_each(user, given, kept):
    session = tag(user, start(user), given)
    assert session.tag_names() == kept
    assert stored(session) == kept


@pytest.mark.parametrize(
    "tags",
    [
        "work",
        {"work": True},
        42,
        [5],
        [None],
        [["nested"]],
        [""],
        ["   "],
        ["x" * 41],
        ["ﷺ" * 3],  # NFKC makes each of these 18 characters: 54 in all
        ["nul\x00here"],
        ["bell\x07"],
        ["lone \ud800 surrogate"],
        ["replacement \ufffd"],
        ["y" * 5000],
        [f"tag {n}" for n in range(21)],
    ],
)
def test_bad_tags_are_refused_and_change_nothing(user, tags):
    session = tag(user, start(user), ["kept"])
    before = ChatSession.objects.get(pk=session.pk).updated_at
    with pytest.raises(DomainError) as excinfo:
        services.conversation_update(
            user=user, session_id=session.pk, title="Renamed", pinned=True, tags=tags
        )
    assert excinfo.value.field == "tags" and excinfo.value.status == 400
    session = ChatSession.objects.get(pk=session.pk)
    assert stored(session) == ["kept"]
    assert (session.title, session.pinned, session.updated_at) == ("", False, before)


def test_twenty_tags_are_allowed_and_duplicates_count_once(user):
    names = [f"tag {n:02}" for n in range(20)]
    session = tag(user, start(user), names + [name.upper() for name in names])
    assert session.tag_names() == names


def test_a_new_list_replaces_the_old_one_whole(user):
    session = tag(user, start(user), ["alpha", "beta", "gamma"])
    assert tag(user, session, ["Gamma", "delta"]).tag_names() == ["delta", "gamma"]
    assert tag(user, session, []).tag_names() == []
    assert not SessionTag.objects.exists()


def test_tags_left_out_of_an_update_are_kept(user):
    session = tag(user, start(user), ["kept"])
    updated = services.conversation_update(user=user, session_id=session.pk, pinned=True)
    assert updated.pinned and updated.tag_names() == ["kept"]


def test_tagging_is_a_change_but_not_activity(user):
    session = start(user)
    before = ChatSession.objects.get(pk=session.pk)
    after = tag(user, session, ["work"])
    assert after.updated_at > before.updated_at
    assert (after.activity_at, after.last_message_at, after.is_active) == (
        before.activity_at,
        before.last_message_at,
        True,
    )


def test_another_users_conversation_cannot_be_tagged(user, other_user):
    theirs = tag(other_user, start(other_user), ["theirs"])
    with pytest.raises(ConversationNotFound):
        tag(user, theirs, ["mine"])
    assert stored(theirs) == ["theirs"]


def test_a_tag_name_is_per_user(user, other_user):
    mine = tag(user, start(user), ["work"])
    theirs = tag(other_user, start(other_user), ["work", "secret"])
    assert [s.pk for s in selectors.session_list(user=user, tag="work")] == [mine.pk]
    assert [s.pk for s in selectors.session_list(user=other_user, tag="work")] == [theirs.pk]
    assert not selectors.session_list(user=user, tag="secret").exists()
    assert selectors.tag_counts(user=user) == [{"name": "work", "count": 1}]
    # Every row carries its conversation's owner, the key of "per user".
    assert not SessionTag.objects.exclude(user=F("session__user")).exists()


def test_filter_by_tag_reads_the_name_as_stored_and_combines_with_the_others(user, model):
    general = tag(user, start(user), ["Work"])
    about_model = tag(user, start(user, model_id=model.pk), ["work", "risk"])
    archived = tag(user, start(user), ["work"])
    services.conversation_update(user=user, session_id=archived.pk, archived=True)
    start(user)  # untagged

    def listed(**filters):
        return {s.pk for s in selectors.session_list(user=user, **filters)}

    assert listed(tag="WORK") == {general.pk, about_model.pk}
    assert listed(tag="work", context="model") == {about_model.pk}
    assert listed(tag="work", model_id=model.pk) == {about_model.pk}
    assert listed(tag="work", archived=True) == {archived.pk}
    assert listed(tag="work", archived=None) == {general.pk, about_model.pk, archived.pk}
    assert listed(tag="risk", context="general") == set()
    with pytest.raises(DomainError) as excinfo:
        selectors.session_list(user=user, tag="bad\x00")
    assert excinfo.value.field == "tag"


def test_search_combines_with_the_tag_filter(user):
    tagged = tag(user, start(user, title="Budget for spring"), ["home"])
    tag(user, start(user, title="Budget at work"), ["work"])
    rows, has_more = selectors.session_search(user=user, query="budget", tag="home")
    assert ([s.pk for s in rows], has_more) == ([tagged.pk], False)
    assert rows[0].tag_names() == ["home"]


def test_tag_counts_are_the_users_by_name_and_follow_archived(user, other_user):
    for names in (["b", "a"], ["a"], ["c"]):
        tag(user, start(user), names)
    archived = tag(user, start(user), ["a", "old"])
    services.conversation_update(user=user, session_id=archived.pk, archived=True)
    tag(other_user, start(other_user), ["a", "z"])

    assert selectors.tag_counts(user=user) == [
        {"name": "a", "count": 2},
        {"name": "b", "count": 1},
        {"name": "c", "count": 1},
    ]
    assert selectors.tag_counts(user=user, archived=None) == [
        {"name": "a", "count": 3},
        {"name": "b", "count": 1},
        {"name": "c", "count": 1},
        {"name": "old", "count": 1},
    ]
    assert selectors.tag_counts(user=user, archived=True) == [
        {"name": "a", "count": 1},
        {"name": "old", "count": 1},
    ]


def test_a_deleted_conversation_takes_its_tags_with_it(user):
    session = tag(user, start(user), ["gone"])
    services.conversation_delete(user=user, session_id=session.pk)
    assert selectors.tag_counts(user=user, archived=None) == []
    assert not SessionTag.objects.exists()


def test_the_sidebar_brings_every_sessions_tags_in_a_constant_number_of_queries(user):
    model = ModelFactory(owner=user)

    def queries_for_sidebar():
        with CaptureQueriesContext(connection) as queries:
            sessions = selectors.sidebar_sessions(user=user)
            names = [s.tag_names() for s in sessions]
        return len(queries), names

    tag(user, start(user), ["first"])
    few, _ = queries_for_sidebar()
    for n in range(12):
        tag(user, start(user, model_id=model.pk if n % 2 else None), [f"t{n}", "shared"])
    many, names = queries_for_sidebar()
    assert few == many == 2
    assert ["first"] in names and ["shared", "t11"] in names

    with CaptureQueriesContext(connection) as queries:
        rows, _ = selectors.sidebar_group_page(user=user, group="general", offset=0)
        assert all(row.tag_names() for row in rows)
    assert len(queries) == 2


def test_the_sidebar_filters_by_tag_within_each_group(user):
    model = ModelFactory(owner=user)
    general = tag(user, start(user), ["work"])
    about_model = tag(user, start(user, model_id=model.pk), ["work"])
    start(user, model_id=model.pk)
    sessions = selectors.sidebar_sessions(user=user, tag="work")
    assert {(s.pk, s.group_key) for s in sessions} == {
        (general.pk, selectors.GROUP_GENERAL),
        (about_model.pk, model.pk),
    }
    rows, has_more = selectors.sidebar_group_page(
        user=user, group=f"model-{model.pk}", offset=0, tag="work"
    )
    assert ([s.pk for s in rows], has_more) == ([about_model.pk], False)


# Exports and imports ------------------------------------------------------------------


def test_exports_carry_the_tags_and_the_json_import_restores_them(user):
    session = tag(user, start(user, title="Tagged"), ["work", "q3 plans"])
    services.reply_start(user=user, session_id=session.pk, content="hello")
    data = exports.export_json(session=session)
    assert data["conversation"]["tags"] == ["q3 plans", "work"]
    assert "- Tags: q3 plans, work\n" in exports.export_markdown(session=session)

    conversation, messages = exports.check_import(data)
    imported = services.conversation_import(user=user, messages=messages, **conversation)
    assert imported.tag_names() == ["q3 plans", "work"]
    assert selectors.tag_counts(user=user) == [
        {"name": "q3 plans", "count": 2},
        {"name": "work", "count": 2},
    ]


def test_an_untagged_conversation_exports_no_tags_line_and_imports_without_tags(user):
    session = start(user, title="Plain")
    data = exports.export_json(session=session)
    assert data["conversation"]["tags"] == []
    assert "Tags:" not in exports.export_markdown(session=session)
    del data["conversation"]["tags"]  # a file exported before tags existed
    conversation, messages = exports.check_import(data)
    imported = services.conversation_import(user=user, messages=messages, **conversation)
    assert imported.tag_names() == []


@pytest.mark.parametrize("tags", ["work", [1], [""], ["x" * 41], [f"t{n}" for n in range(21)]])
def test_an_import_with_bad_tags_is_refused_whole(user, tags):
    data = exports.export_json(session=start(user))
    data["conversation"]["tags"] = tags
    with pytest.raises(DomainError) as excinfo:
        exports.check_import(data)
    assert excinfo.value.field == "conversation.tags"
    with pytest.raises(DomainError):
        services.conversation_import(user=user, messages=[], tags=tags)
    assert ChatSession.objects.count() == 1


def test_an_import_normalises_its_tags_like_any_other_door(user):
    data = exports.export_json(session=start(user))
    data["conversation"]["tags"] = ["Work", "WORK", " Deep  Work "]
    conversation, messages = exports.check_import(data)
    assert conversation["tags"] == ["deep work", "work"]
    imported = services.conversation_import(user=user, messages=messages, **conversation)
    assert imported.tag_names() == ["deep work", "work"]


# Admin ----------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


def test_the_admin_shows_tags_and_filters_by_them(staff_client, user, other_user):
    work = tag(user, start(user, title="Work one"), ["work", "urgent"])
    tag(user, start(user, title="Home one"), ["home"])
    theirs = tag(other_user, start(other_user, title="Their work"), ["work"])
    url = reverse("admin:chat_chatsession_changelist")

    page = staff_client.get(url)
    assert page.status_code == 200
    assert "urgent, work" in page.content.decode()
    assert {"home", "urgent", "work"} <= {
        choice["display"]
        for spec in page.context["cl"].filter_specs
        if spec.title == "tag"
        for choice in spec.choices(page.context["cl"])
    }

    filtered = staff_client.get(f"{url}?tag=work").context["cl"].result_list
    assert {s.pk for s in filtered} == {work.pk, theirs.pk}
    mine = staff_client.get(f"{url}?tag=work&user__id__exact={user.pk}").context["cl"]
    assert [s.pk for s in mine.result_list] == [work.pk]

    change = staff_client.get(reverse("admin:chat_chatsession_change", args=[work.pk]))
    assert change.status_code == 200 and "urgent, work" in change.content.decode()


def test_saving_in_the_admin_keeps_the_tags(staff_client, user):
    session = tag(user, start(user, title="Before"), ["kept"])
    response = staff_client.post(
        reverse("admin:chat_chatsession_change", args=[session.pk]),
        {
            "title": "After",
            "pinned": "on",
            "messages-TOTAL_FORMS": "0",
            "messages-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    session = ChatSession.objects.get(pk=session.pk)
    assert (session.title, session.pinned, session.tag_names()) == ("After", True, ["kept"])


# Concurrency (PostgreSQL) -------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_replacements_leave_one_whole_list(caplog):
    """Eight replacements at once, five each: one whole list stays, and none of them
    deadlocked on the way (each takes the conversation's row lock before any tag's)."""
    caplog.set_level(logging.INFO, logger="chat.services")
    user = UserFactory()
    session = start(user)
    lists = [[f"w{n}-{k}" for k in range(5)] for n in range(8)]
    barrier = threading.Barrier(len(lists))
    errors = []

    def work(names):
        try:
            barrier.wait(timeout=30)
            for _ in range(5):
                services.conversation_update(user=user, session_id=session.pk, tags=names)
        except Exception as exc:  # every failure the caller would see
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(names,), daemon=True) for names in lists]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert stored(session) in lists
    assert [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()] == []


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_retagging_and_deleting_at_once_never_fail_nor_leave_tags_behind(caplog):
    caplog.set_level(logging.INFO, logger="chat.services")
    user = UserFactory()
    sessions = [start(user) for _ in range(40)]
    for session in sessions:
        tag(user, session, ["a", "b", "c"])
    barrier = threading.Barrier(2)
    errors = []

    def each(call):
        try:
            barrier.wait(timeout=30)
            for n, session in enumerate(sessions):
                try:
                    call(n, session)
                except ConversationNotFound:
                    pass  # the other thread deleted it first
                except Exception as exc:  # every failure the caller would see
                    errors.append(repr(exc))
        finally:
            connection.close()

    def retag(n, session):
        tag(user, session, ["b", f"x{n}", "z"])

    def delete(n, session):
        services.conversation_delete(user=user, session_id=session.pk)

    threads = [threading.Thread(target=each, args=(call,), daemon=True) for call in (retag, delete)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert not ChatSession.objects.filter(user=user).exists()
    assert not SessionTag.objects.exists()
    assert [r.getMessage() for r in caplog.records if "deadlock" in r.getMessage()] == []
