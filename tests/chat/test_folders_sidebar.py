"""Folders in the sidebar (SPEC 4.6): a general conversation in a folder shows under its
folder, not under General; each folder shows its first conversations in sidebar order,
read in the same two queries however many folders; its further pages continue it; the
item's "Move to folder" form and the folder's own menu (rename, delete) work by htmx."""

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from chat import selectors, services
from chat.models import ChatSession, Folder
from tests.factories import ChatSessionFactory, ModelFactory

from .conftest import HTMX
from .test_sidebar import in_sidebar_order

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def group_of(session):
    if session.folder_id:
        return ("folder", session.folder_id)
    if session.detached_label:
        return selectors.GROUP_DETACHED
    return session.model_id or selectors.GROUP_GENERAL


def shown_group(session):
    return ("folder", session.folder_id) if session.folder_id else session.group_key


def expected(user, *, per_group, archived=False, tag=None):
    sessions = ChatSession.objects.filter(user=user, archived=archived, temporary=False)
    if tag is not None:
        sessions = sessions.filter(tags__name=tag)
    taken, shown = Counter(), []
    for session in in_sidebar_order(sessions):
        key = group_of(session)
        if taken[key] < per_group:
            taken[key] += 1
            shown.append((session.pk, key))
    return shown


def sidebar(user, **kwargs):
    return [(s.pk, shown_group(s)) for s in selectors.sidebar_sessions(user=user, **kwargs)]


@pytest.fixture
def filed(user, other_user):
    """General conversations in three folders and none, a model's, a temporary one, and
    another user's folder with conversations of theirs."""
    folders = [services.folder_create(user=user, name=f"Folder {n}") for n in range(3)]
    model = ModelFactory(owner=user)
    for i in range(24):
        session = ChatSessionFactory(
            user=user,
            folder=folders[i % 4] if i % 4 < 3 else None,
            pinned=i % 7 == 0,
            archived=i % 5 == 0,
            activity_at=NOW - timedelta(minutes=i if i % 3 else i - 1),
        )
        if i % 2 == 0:
            services.conversation_update(user=user, session_id=session.pk, tags=["work"])
    ChatSessionFactory(user=user, model=model)
    ChatSessionFactory(user=user, temporary=True, is_active=False)
    theirs = services.folder_create(user=other_user, name="Theirs")
    for _ in range(3):
        ChatSessionFactory(user=other_user, folder=theirs)
    return folders


@pytest.mark.parametrize("per_group", [1, 2, 30])
@pytest.mark.parametrize("archived", [False, True])
def test_each_folder_shows_its_first_conversations_and_general_the_rest(
    user, filed, per_group, archived
):
    shown = sidebar(user, per_group=per_group, archived=archived)
    assert shown == expected(user, per_group=per_group, archived=archived)
    if not archived:
        assert {("folder", f.pk) for f in filed} <= {key for _, key in shown}


def test_the_tag_filter_ranks_within_each_folder(user, filed):
    for per_group in (1, 3, 30):
        assert sidebar(user, per_group=per_group, tag="work") == expected(
            user, per_group=per_group, tag="work"
        )


def test_still_two_queries_however_many_folders(user, filed, django_assert_num_queries):
    with django_assert_num_queries(2):
        few = selectors.sidebar_sessions(user=user, per_group=2)
    for n in range(5):
        folder = services.folder_create(user=user, name=f"More {n}")
        for _ in range(3):
            ChatSessionFactory(user=user, folder=folder)
    with django_assert_num_queries(2):
        many = selectors.sidebar_sessions(user=user, per_group=2)
    assert len({shown_group(s) for s in many}) == len({shown_group(s) for s in few}) + 5


def test_the_pages_of_a_folder_and_of_general_continue_them(user, filed):
    everything = expected(user, per_group=10_000)
    groups = {("folder", f.pk): f"folder-{f.pk}" for f in filed}
    groups[selectors.GROUP_GENERAL] = "general"
    for key, name in groups.items():
        shown, offset, has_more = [], 0, True
        while has_more:
            rows, has_more = selectors.sidebar_group_page(
                user=user, group=name, offset=offset, limit=2
            )
            shown += [s.pk for s in rows]
            offset += 2
        assert shown == [pk for pk, group in everything if group == key], name


def test_another_users_folder_pages_are_empty_and_a_bad_one_refused(user, other_user, filed):
    theirs = Folder.objects.get(user=other_user)
    rows, has_more = selectors.sidebar_group_page(user=user, group=f"folder-{theirs.pk}", offset=0)
    assert (rows, has_more) == ([], False)
    with pytest.raises(services.DomainError):
        selectors.sidebar_group_page(user=user, group="folder-x", offset=0)


def test_the_sidebar_shows_folders_above_general_collapsible(user, web, filed):
    session = ChatSession.objects.filter(folder=filed[1], archived=False).first()
    html = web.get("/sidebar", **HTMX).content.decode()
    first_folder = html.index(f'data-group="folder-{filed[0].pk}"')
    assert first_folder < html.index('data-group="general"')
    assert '<details class="folder">' in html
    section = html[html.index(f'data-group="folder-{filed[1].pk}"') :]
    assert f'id="s-{session.pk}"' in section.split("</section>")[0]
    assert "Theirs" not in html
    # The folder holding the conversation on screen is open.
    page = web.get(f"/c/{session.pk}").content.decode()
    holding = page[page.index(f'data-group="folder-{filed[1].pk}"') :]
    assert holding.split(">", 2)[1].strip().startswith('<details class="folder" open')


def test_move_to_a_folder_from_the_items_menu(user, web):
    folder = services.folder_create(user=user, name="Work")
    session, _ = services.conversation_start(user=user)
    form = web.get(f"/c/{session.pk}/folder", **HTMX)
    assert form.status_code == 200
    assert f'<option value="{folder.pk}">Work</option>' in form.content.decode()
    moved = web.post(f"/c/{session.pk}/folder", {"folder": folder.pk}, **HTMX)
    assert moved.status_code == 200 and moved["HX-Retarget"] == "#session-groups"
    assert ChatSession.objects.get(pk=session.pk).folder_id == folder.pk
    html = moved.content.decode()
    assert (
        f'id="s-{session.pk}"' in html[html.index(f"folder-{folder.pk}") :].split("</section>")[0]
    )
    web.post(f"/c/{session.pk}/folder", {"folder": ""}, **HTMX)
    assert ChatSession.objects.get(pk=session.pk).folder_id is None


def test_move_to_a_new_folder_creates_it(user, web):
    session, _ = services.conversation_start(user=user)
    web.post(f"/c/{session.pk}/folder", {"folder": "", "new_folder": " Ideas "}, **HTMX)
    folder = Folder.objects.get(user=user)
    assert folder.name == "Ideas"
    assert ChatSession.objects.get(pk=session.pk).folder_id == folder.pk


def test_refused_moves_say_why_in_the_form_and_change_nothing(user, other_user, web):
    theirs = services.folder_create(user=other_user, name="Theirs")
    session, _ = services.conversation_start(user=user)
    too_long = web.post(f"/c/{session.pk}/folder", {"new_folder": "x" * 81}, **HTMX)
    assert too_long.status_code == 200 and 'role="alert"' in too_long.content.decode()
    assert "HX-Retarget" not in too_long
    assert web.post(f"/c/{session.pk}/folder", {"folder": theirs.pk}, **HTMX).status_code == 404
    assert web.post(f"/c/{session.pk}/folder", {"folder": "abc"}, **HTMX).status_code == 200
    model_session, _ = services.conversation_start(user=user, model_id=ModelFactory(owner=user).pk)
    refused = web.post(f"/c/{model_session.pk}/folder", {"new_folder": "Nope"}, **HTMX)
    assert "general conversation" in refused.content.decode()
    assert not ChatSession.objects.filter(folder__isnull=False).exists()
    assert list(Folder.objects.values_list("name", flat=True)) == ["Theirs"]


def test_the_move_item_is_offered_for_general_conversations_only(user, web):
    model = ModelFactory(owner=user)
    general, _ = services.conversation_start(user=user)
    about, _ = services.conversation_start(user=user, model_id=model.pk)
    html = web.get("/sidebar", **HTMX).content.decode()
    assert f"/c/{general.pk}/folder" in html and f"/c/{about.pk}/folder" not in html


def test_rename_and_delete_a_folder_from_its_menu(user, web):
    folder = services.folder_create(user=user, name="Work")
    session = ChatSessionFactory(user=user, folder=folder)
    form = web.get(f"/folders/{folder.pk}/rename", **HTMX).content.decode()
    assert 'value="Work"' in form
    renamed = web.post(f"/folders/{folder.pk}/rename", {"name": "Jobs"}, **HTMX)
    assert renamed["HX-Retarget"] == "#session-groups" and "Jobs" in renamed.content.decode()
    refused = web.post(f"/folders/{folder.pk}/rename", {"name": "  "}, **HTMX)
    assert 'role="alert"' in refused.content.decode()
    assert Folder.objects.get().name == "Jobs"
    deleted = web.post(f"/folders/{folder.pk}/delete", **HTMX)
    assert deleted.status_code == 200 and f'id="s-{session.pk}"' in deleted.content.decode()
    assert not Folder.objects.exists()
    assert ChatSession.objects.get(pk=session.pk).folder_id is None


def test_another_users_folder_pages_are_404(user, other_user, web):
    theirs = services.folder_create(user=other_user, name="Theirs")
    assert web.get(f"/folders/{theirs.pk}/rename", **HTMX).status_code == 404
    assert web.post(f"/folders/{theirs.pk}/rename", {"name": "x"}, **HTMX).status_code == 404
    assert web.post(f"/folders/{theirs.pk}/delete", **HTMX).status_code == 404
    assert Folder.objects.get().name == "Theirs"
