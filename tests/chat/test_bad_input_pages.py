"""Hostile input at the browser pages: a 400 or 404 page, never a 500 (SPEC 4.6).

Django's test client re-raises a view's exception, so a 500 fails these tests loudly.
"""

import pytest

from chat import services
from chat.selectors import SIDEBAR_OFFSET_MAX, SIDEBAR_PAGE
from tests.factories import ModelFactory, RunFactory

pytestmark = pytest.mark.django_db

HUGE = "1" * 30


@pytest.mark.parametrize("value", [HUGE, str(2**63), "9" * 5000])
def test_absurd_ids_in_page_urls_are_404(web, user, value):
    session, _ = services.conversation_start(user=user)
    model = ModelFactory(owner=user)
    run = RunFactory(model=model)
    for url in [
        f"/models/{value}/",
        f"/models/{value}/edit/",
        f"/models/{value}/delete/",
        f"/m/{value}/new",
        f"/m/{value}/runs/{run.pk}/chat",
        f"/m/{model.pk}/runs/{value}/chat",
        f"/c/{session.pk}/messages/{value}",
        f"/c/{session.pk}/messages?before={value}",
    ]:
        assert web.get(url).status_code == 404, url
    for url in [f"/models/{value}/edit/", f"/models/{value}/delete/"]:
        assert web.post(url, {"name": "x"}).status_code == 404, url


@pytest.mark.parametrize("offset", [HUGE, "-5", "abc", "1.5", "", "٣", str(SIDEBAR_OFFSET_MAX + 1)])
def test_a_sidebar_offset_that_is_not_a_small_whole_number_is_400(web, offset):
    response = web.get("/sidebar/more", {"group": "general", "offset": offset})
    assert response.status_code == 400
    assert "offset" in response.content.decode()


def test_the_sidebar_still_pages_with_a_valid_offset(web, user):
    for _ in range(SIDEBAR_PAGE + 2):
        services.conversation_start(user=user)
    response = web.get("/sidebar/more", {"group": "general", "offset": SIDEBAR_PAGE})
    assert response.status_code == 200
    assert response.content.decode().count('class="session-item') == 2


@pytest.mark.parametrize("query", ["a\x00b", "\x00", "\x00 plan"])
def test_search_with_nul_in_the_query_answers(web, user, query):
    # PostgreSQL refuses NUL in a query string; the search cleans it like stored text.
    services.conversation_start(user=user, title="plan for a\ufffdb")
    response = web.get("/search", {"q": query})
    assert response.status_code == 200
    assert "\x00" not in response.content.decode()


def test_nul_in_other_page_parameters_is_harmless(web, user):
    session, _ = services.conversation_start(user=user)
    for url, status in [
        ("/sidebar?archived=%00", 200),
        ("/sidebar/more?group=%00&offset=0", 404),
        ("/sidebar/more?group=model-%00&offset=0", 404),
        (f"/c/{session.pk}?x=%00", 200),
        (f"/c/{session.pk}/messages?before=%00", 404),
        ("/new?%00=1", 200),
    ]:
        assert web.get(url).status_code == status, url
