"""Tags in the sidebar (SPEC 4.6): the inline tags form, the tags on each item, the filter
by tag, through Django's test client and the real database."""

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import services
from chat.models import ChatSession, SessionTag
from tests.chat.conftest import HTMX, start
from tests.factories import ModelFactory

pytestmark = pytest.mark.django_db


def tagged(user, tags, **kwargs) -> ChatSession:
    session = start(user, **kwargs)
    return services.conversation_update(user=user, session_id=session.pk, tags=tags)


def names(session) -> list[str]:
    return sorted(SessionTag.objects.filter(session=session).values_list("name", flat=True))


def item_ids(html: str) -> set[str]:
    return set(re.findall(r'<li class="session-item[^"]*" id="s-([0-9a-f-]{36})"', html))


def test_the_tags_form_shows_the_tags_and_a_field_to_add_some(web, user):
    session = tagged(user, ["work", "ideas"], title="Plans")
    html = web.get(f"/c/{session.pk}/tags", **HTMX).content.decode()
    assert 'name="add"' in html and f'for="tags-add-{session.pk}"' in html
    assert html.count('name="tags"') == 2
    assert 'aria-label="Remove the tag ideas"' in html
    assert "Tags of “Plans”" in html


def test_saving_the_form_replaces_the_tags_and_returns_the_item_with_them(web, user):
    session = tagged(user, ["work", "ideas"], title="Plans")
    # "ideas" removed in the form; two added, one of them in capitals.
    response = web.post(
        f"/c/{session.pk}/tags", {"tags": ["work"], "add": "Travel, lisbon 2026 ,"}, **HTMX
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert names(session) == ["lisbon 2026", "travel", "work"]
    assert f'<li class="session-item" id="s-{session.pk}"' in html
    assert "tagging" not in html  # the item, not the form
    tags = re.findall(r'<span class="tag">([^<]+)</span>', html)
    assert tags == ["lisbon 2026", "travel", "work"]
    assert "Edit tags" in html  # its menu, to change them again


def test_saving_an_empty_form_removes_every_tag(web, user):
    session = tagged(user, ["work"])
    response = web.post(f"/c/{session.pk}/tags", {"add": ""}, **HTMX)
    assert response.status_code == 200
    assert names(session) == []
    assert 'class="session-tags"' not in response.content.decode()


@pytest.mark.parametrize(
    ("add", "message"),
    [
        ("x" * 41, "A tag is longer than 40 characters."),
        ("bad\x07bell", "A tag cannot contain control characters or U+FFFD."),
        (",".join(f"t{n}" for n in range(20)), "A conversation has at most 20 tags; these are 21."),
    ],
)
def test_bad_tags_are_said_in_the_form_and_change_nothing(web, user, add, message):
    session = tagged(user, ["keep"])
    before = ChatSession.objects.get(pk=session.pk).updated_at
    response = web.post(f"/c/{session.pk}/tags", {"tags": ["keep"], "add": add}, **HTMX)
    assert response.status_code == 200  # htmx swaps the form back in, with the error
    html = response.content.decode()
    assert message in html
    assert 'role="alert"' in html and 'aria-invalid="true"' in html
    assert 'name="add"' in html  # the form, with what was typed kept in it
    assert names(session) == ["keep"]
    assert ChatSession.objects.get(pk=session.pk).updated_at == before
    # Without htmx: the same form, as a 400.
    assert web.post(f"/c/{session.pk}/tags", {"tags": ["keep"], "add": add}).status_code == 400
    assert names(session) == ["keep"]


def test_another_users_conversation_is_a_404_and_keeps_its_tags(web, other_user):
    theirs = tagged(other_user, ["secret"])
    assert web.get(f"/c/{theirs.pk}/tags", **HTMX).status_code == 404
    assert web.post(f"/c/{theirs.pk}/tags", {"add": "mine"}, **HTMX).status_code == 404
    assert web.get(f"/c/{theirs.pk}/item", **HTMX).status_code == 404
    assert web.get(f"/c/{uuid.uuid4()}/tags", **HTMX).status_code == 404
    assert names(theirs) == ["secret"]


def test_the_item_can_be_had_alone_after_a_cancel(web, user):
    session = tagged(user, ["work"], title="Alone")
    html = web.get(f"/c/{session.pk}/item", **HTMX).content.decode()
    assert f'id="s-{session.pk}"' in html and '<span class="tag">work</span>' in html


def test_the_sidebar_filters_by_tag_and_offers_the_users_tags_with_counts(web, user, other_user):
    work = tagged(user, ["work"], title="Work one")
    both = tagged(user, ["work", "home"], title="Work and home")
    untagged = start(user, title="Nothing")
    tagged(other_user, ["work", "theirs"], title="Their work")

    html = web.get("/sidebar").content.decode()
    assert item_ids(html) == {str(work.pk), str(both.pk), str(untagged.pk)}
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]+)</option>', html)
    assert options == [("", "All conversations"), ("home", "home (1)"), ("work", "work (2)")]
    assert 'id="tag-filter-clear"' not in html

    html = web.get("/sidebar?tag=Work").content.decode()  # read as stored: lowercased
    assert item_ids(html) == {str(work.pk), str(both.pk)}
    assert '<option value="work" selected>' in html
    assert 'id="tag-filter-clear"' in html  # a clear way back
    assert '<input type="hidden" name="tag" value="work" data-sidebar-tag>' in html
    assert f'href="/c/{work.pk}?tag=work"' in html  # the filter follows the links
    assert "Their work" not in html and "theirs" not in html

    html = web.get("/sidebar?tag=theirs").content.decode()  # another user's tag: nothing
    assert item_ids(html) == set()
    assert "No conversation is tagged “theirs”." in html
    assert "Their work" not in html


def test_a_malformed_tag_filter_is_a_400_and_a_page_ignores_it(web, user):
    tagged(user, ["work"])
    assert web.get("/sidebar?tag=" + "x" * 41).status_code == 400
    assert web.get("/sidebar/more?group=general&offset=0&tag=%07").status_code == 400
    assert web.get("/search?q=x&tag=" + "x" * 41).status_code == 400
    assert web.get("/new?tag=" + "x" * 41).status_code == 200


def test_a_page_opened_with_a_tag_shows_its_sidebar_filtered(web, user):
    work = tagged(user, ["work"], title="Work one")
    start(user, title="Other")
    html = web.get(f"/c/{work.pk}?tag=work").content.decode()
    assert '<option value="work" selected>' in html
    assert "Other" not in html.split('id="session-groups"')[1]


def test_the_more_loader_carries_the_tag_and_pages_within_it(web, user):
    ids = [str(tagged(user, ["long list"]).pk) for _ in range(32)]
    for _ in range(3):
        start(user)
    html = web.get("/sidebar?tag=long+list").content.decode()
    loader = re.search(r'class="more-loader" hx-get="([^"]+)"', html).group(1)
    assert loader.endswith("&amp;tag=long%20list")
    first = item_ids(html)
    more = web.get(loader.replace("&amp;", "&")).content.decode()
    rest = item_ids(more)
    assert first | rest == set(ids) and not first & rest
    assert "tag=long%20list" in more or "more-loader" not in more


def test_search_keeps_to_the_tag_and_shows_the_tags(web, user, other_user):
    from tests.factories import append_message

    a = tagged(user, ["work"], title="Budget at work")
    b = tagged(user, ["home"], title="Budget at home")
    append_message(a, "the budget for the office")
    append_message(b, "the budget for the kitchen")
    theirs = tagged(other_user, ["work"], title="Budget of theirs")
    append_message(theirs, "their budget")

    html = web.get("/search?q=budget").content.decode()
    assert "Budget at work" in html and "Budget at home" in html
    assert '<span class="tag">home</span>' in html
    html = web.get("/search?q=budget&tag=work").content.decode()
    assert "Budget at work" in html and "Budget at home" not in html
    assert "tagged “work”" in html
    assert "theirs" not in html


def test_writes_from_a_filtered_list_return_it_filtered(web, user):
    work = tagged(user, ["work"], title="Work one")
    start(user, title="Other")
    html = web.post(f"/c/{work.pk}/pin", {"tag": "work"}, **HTMX).content.decode()
    assert item_ids(html) == {str(work.pk)}
    assert '<option value="work" selected>' in html
    html = web.post(f"/c/{work.pk}/tags", {"tags": ["work"], "tag": "work"}, **HTMX).content
    assert f'href="/c/{work.pk}?tag=work"'.encode() in html


def test_the_sidebar_with_tags_takes_a_constant_number_of_queries(web, user):
    model = ModelFactory(owner=user)

    def sidebar_queries(url="/sidebar") -> int:
        with CaptureQueriesContext(connection) as queries:
            assert web.get(url, **HTMX).status_code == 200
        return len(queries)

    tagged(user, ["first"])
    few = sidebar_queries()
    few_filtered = sidebar_queries("/sidebar?tag=first")
    for n in range(15):
        tagged(user, [f"t{n}", "shared"], model_id=model.pk if n % 2 else None)
    assert sidebar_queries() == few
    assert sidebar_queries("/sidebar?tag=shared") == few_filtered
    with CaptureQueriesContext(connection) as queries:
        assert web.get("/sidebar/more?group=general&offset=0&tag=shared").status_code == 200
    page_queries = len(queries)
    for n in range(10):
        tagged(user, [f"u{n}", "shared"])
    with CaptureQueriesContext(connection) as queries:
        web.get("/sidebar/more?group=general&offset=0&tag=shared")
    assert len(queries) == page_queries
