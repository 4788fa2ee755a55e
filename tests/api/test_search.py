import pytest
from django.db import connection

from tests.factories import ChatSessionFactory, MessageFactory

from .conftest import assert_error

pytestmark = pytest.mark.django_db


def search(api, query):
    response = api.get("/api/sessions/", {"q": query})
    assert response.status_code == 200, response.content
    return response.json()


def test_search_finds_titles_and_message_contents_with_a_snippet(api, user, other_user):
    by_title = ChatSessionFactory(user=user, title="Volatility planning")
    by_message = ChatSessionFactory(user=user, title="Something else")
    MessageFactory(
        session=by_message,
        content="We talked about implied volatility of options before earnings season.",
    )
    ChatSessionFactory(user=user, title="Unrelated")
    theirs = ChatSessionFactory(user=other_user, title="volatility")
    MessageFactory(session=theirs, content="volatility volatility")

    body = search(api, "volatility")
    ids = [item["id"] for item in body["results"]]
    assert set(ids) == {str(by_title.pk), str(by_message.pk)}
    snippets = {item["id"]: item["snippet"] for item in body["results"]}
    assert "**volatility**" in snippets[str(by_message.pk)].lower()
    assert "earnings" in snippets[str(by_message.pk)]
    assert "volatility" in snippets[str(by_title.pk)].lower()


def test_search_ranks_and_paginates(api, user):
    for index in range(5):
        session = ChatSessionFactory(user=user, title=f"Chat {index}")
        MessageFactory(session=session, content=f"hedging idea number {index}")
    best = ChatSessionFactory(user=user, title="Hedging")
    MessageFactory(session=best, content="hedging hedging hedging")
    first = api.get("/api/sessions/", {"q": "hedging", "limit": 4}).json()
    assert first["results"][0]["id"] == str(best.pk)
    assert first["next"]
    second = api.get(first["next"]).json()
    assert second["next"] is None
    ids = [item["id"] for item in first["results"] + second["results"]]
    assert len(ids) == len(set(ids)) == 6


def test_search_without_matches_and_list_without_q_have_no_snippet(api, user):
    ChatSessionFactory(user=user, title="Anything")
    assert search(api, "zebra")["results"] == []
    assert api.get("/api/sessions/").json()["results"][0]["snippet"] is None


@pytest.mark.parametrize("query", ["   ", "x" * 201])
def test_empty_or_over_long_search_is_400(api, query):
    assert_error(api.get("/api/sessions/", {"q": query}), 400)


@pytest.mark.postgres_only
def test_postgres_search_uses_the_full_text_indexes(user):
    from chat import selectors

    ChatSessionFactory(user=user, title="x")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE indexname IN "
            "('message_content_fts', 'session_title_fts')"
        )
        assert {row[0] for row in cursor.fetchall()} == {
            "message_content_fts",
            "session_title_fts",
        }
        # The index must match the expression the search compiles to.
        from django.contrib.postgres.search import SearchQuery, SearchVector

        from chat.models import Message

        qs = (
            Message.objects.annotate(document=SearchVector("content", config="english"))
            .filter(document=SearchQuery("volatility", config="english"))
            .values("pk")
        )
        cursor.execute("SET enable_seqscan = off")
        plan = qs.explain()
        cursor.execute("RESET enable_seqscan")
    assert "message_content_fts" in plan
    rows, _ = selectors.session_search(user=user, query="x")
    assert rows == [] or all(hasattr(row, "snippet") for row in rows)


@pytest.mark.parametrize("query", ["xyloph", "XYLO", "tuned xyloph"])
def test_the_last_word_of_a_search_matches_as_a_prefix(api, user, query):
    """People search as they type (both databases)."""
    session = ChatSessionFactory(user=user, title="Music")
    MessageFactory(session=session, content="A finely tuned xylophone for the band.")
    ChatSessionFactory(user=user, title="Other")
    body = search(api, query)
    assert [item["id"] for item in body["results"]] == [str(session.pk)]
    marked = body["results"][0]["snippet"].split("**")[1::2]
    assert any("xylo" in part.lower() for part in marked)
