"""The chat pages and htmx partials, through Django's test client and the real database."""

import re
import uuid

import pytest
from django.test import Client

from chat import services
from chat.models import ChatSession, Message
from tests.chat.conftest import HTMX, start
from tests.factories import (
    MessageFactory,
    ModelFactory,
    RunFactory,
    UserFactory,
    append_message,
)

pytestmark = pytest.mark.django_db


def say(session, content, role=Message.Role.USER):
    return append_message(session, content, role)


def assert_csp_safe(html: str) -> None:
    """No inline script, inline handler or style attribute: the CSP would block them."""
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style attribute"


def test_pages_need_a_login(client, user):
    session = start(user)
    for url in ["/", "/new", f"/c/{session.pk}", "/models/", "/sidebar", "/search?q=x"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url


def test_home_redirects_to_a_new_chat(web):
    response = web.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/new"


def test_new_chat_is_ephemeral_and_creates_nothing(web, user):
    response = web.get("/new")
    assert response.status_code == 200
    assert ChatSession.objects.count() == 0
    html = response.content.decode()
    assert 'data-session=""' in html
    assert 'id="composer-input"' in html
    assert "How can I help you today?" in html
    assert_csp_safe(html)


def test_pages_carry_a_strict_content_security_policy(web):
    policy = web.get("/new")["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "img-src 'self' data:" in policy
    assert "connect-src 'self';" in policy  # 'self' covers this host's ws:/wss:


def test_opening_a_conversation_resumes_it(web, user):
    first = start(user)
    say(first, "hello **world**")
    second = start(user)
    first.refresh_from_db()
    assert not first.is_active and second.is_active

    response = web.get(f"/c/{first.pk}")

    assert response.status_code == 200
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.is_active and not second.is_active
    html = response.content.decode()
    assert "<strong>world</strong>" in html
    assert f'data-session="{first.pk}"' in html
    assert 'aria-current="page"' in html
    assert_csp_safe(html)


def test_a_reply_shows_its_code_highlighted_with_the_sites_stylesheet(web, user):
    session = start(user)
    say(session, "```python\nimport os\n```", Message.Role.ASSISTANT)
    html = web.get(f"/c/{session.pk}").content.decode()
    assert '<pre><code class="language-python"><span class="kn">import</span>' in html
    assert '<span class="nn">os</span>' in html
    assert html.index("/static/css/app.css") < html.index("/static/css/highlight.css")
    assert_csp_safe(html)


def test_another_users_conversation_is_a_404_page(web, other_user):
    theirs = start(other_user)
    response = web.get(f"/c/{theirs.pk}")
    assert response.status_code == 404
    assert "Not found" in response.content.decode()
    assert "404.html" in [t.name for t in response.templates]
    theirs.refresh_from_db()
    assert theirs.is_active


def test_unknown_conversation_and_bad_ids_are_404(web):
    assert web.get(f"/c/{uuid.uuid4()}").status_code == 404
    assert web.get("/c/not-a-uuid").status_code == 404
    assert web.get("/m/999999/new").status_code == 404


def test_stored_html_in_messages_is_inert(web, user):
    session = start(user)
    say(session, "<script>window.pwned=1</script> <img src=x onerror=alert(1)>")
    reply = "[click](javascript:alert(1)) ![i](http://evil.test/x.png)"
    say(session, reply, Message.Role.ASSISTANT)
    html = web.get(f"/c/{session.pk}").content.decode()
    assert "<script>window.pwned" not in html
    assert "&lt;script&gt;" in html
    assert "<img" not in html
    messages = html.split('id="message-list"')[1]
    assert not re.search(r"href=\"\s*javascript:", messages, flags=re.I)
    assert not re.search(r"src=\"[^\"]*evil\.test", messages)


def test_model_chat_shows_the_models_configuration(web, user):
    model = ModelFactory(owner=user, name="Momentum", buying_power="25000.00")
    response = web.get(f"/m/{model.pk}/new")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Momentum" in html
    assert "Swing trading" in html and "$25,000.00" in html
    assert f'data-model="{model.pk}"' in html
    assert 'data-url-base="/m/' in html
    assert ChatSession.objects.count() == 0


def test_another_users_model_is_a_404(web, other_user):
    theirs = ModelFactory(owner=other_user)
    assert web.get(f"/m/{theirs.pk}/new").status_code == 404
    run = RunFactory(model=theirs)
    assert web.get(f"/m/{theirs.pk}/runs/{run.pk}/chat").status_code == 404


def test_model_conversation_lives_at_its_model_url(web, user, model):
    session = start(user, model_id=model.pk)
    assert web.get(f"/m/{model.pk}/c/{session.pk}").status_code == 200
    # The same conversation under another address redirects to its own.
    response = web.get(f"/c/{session.pk}")
    assert response.status_code == 302
    assert response["Location"] == f"/m/{model.pk}/c/{session.pk}"


def test_run_chat_is_ephemeral_without_an_active_conversation(web, user, model):
    run = RunFactory(model=model, ending_equity="10450.00", starting_capital="10000.00")
    response = web.get(f"/m/{model.pk}/runs/{run.pk}/chat")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-run="{run.pk}"' in html
    assert "P&amp;L +$450.00" in html
    assert ChatSession.objects.count() == 0


def test_run_chat_opens_the_runs_active_conversation(web, user, model, run):
    session = start(user, model_id=model.pk, run_id=run.pk)
    response = web.get(f"/m/{model.pk}/runs/{run.pk}/chat")
    assert response.status_code == 302
    assert response["Location"] == f"/c/{session.pk}"
    html = web.get(response["Location"]).content.decode()
    assert f"Run #{run.pk}" in html


def test_run_of_another_model_is_a_404(web, user, model):
    other_model = ModelFactory(owner=user)
    run = RunFactory(model=other_model)
    assert web.get(f"/m/{model.pk}/runs/{run.pk}/chat").status_code == 404


def test_sidebar_groups_conversations_by_context(web, user, model):
    general = start(user, title="Plain question")
    about_model = start(user, model_id=model.pk, title="Model talk")
    gone_model = ModelFactory(owner=user, name="Old")
    detached = start(user, model_id=gone_model.pk, title="Orphan")
    from models_app.services import model_delete

    model_delete(user=user, model_id=gone_model.pk)
    html = web.get("/sidebar").content.decode()
    general_pos = html.index("Plain question")
    model_pos = html.index("Model talk")
    detached_pos = html.index("Orphan")
    assert html.index(">General<") < general_pos < html.index(f">{model.name}<") < model_pos
    assert model_pos < html.index(">Deleted model<") < detached_pos
    assert str(detached.pk) in html and str(about_model.pk) in html and str(general.pk) in html


def test_sidebar_lists_pinned_first_then_most_recent(web, user):
    older = start(user, title="Older pinned")
    services.conversation_update(user=user, session_id=older.pk, pinned=True)
    newer = start(user, title="Newer")
    say(newer, "latest activity")
    html = web.get("/sidebar").content.decode()
    assert html.index("Older pinned") < html.index("Newer")
    assert "latest activity" in html  # the preview


def test_sidebar_marks_the_active_conversation_of_each_context(web, user):
    start(user, title="Inactive one")
    start(user, title="Active one")
    html = web.get("/sidebar").content.decode()
    items = dict(re.findall(r'data-title-for="[^"]+">([^<]+)<(.*?)</li>', html, flags=re.S))
    assert "(active)" in items["Active one"]
    assert "(active)" not in items["Inactive one"]


def test_sidebar_loads_more_past_the_first_page(web, user):
    for n in range(35):
        start(user, title=f"Chat {n:02d}")
    html = web.get("/sidebar").content.decode()
    assert html.count('class="session-item') == 30
    loader = re.search(r'hx-get="(/sidebar/more\?[^"]+)"', html).group(1).replace("&amp;", "&")
    more = web.get(loader, **HTMX).content.decode()
    assert more.count('class="session-item') == 5
    assert "Chat 00" in more and "/sidebar/more" not in more


def test_older_messages_load_a_page_before_the_first_shown(web, user):
    session = start(user)
    for n in range(60):
        say(session, f"line {n:02d}")
    html = web.get(f"/c/{session.pk}").content.decode()
    assert "line 59" in html and "line 10" in html and "line 09" not in html
    url = re.search(r'hx-get="(/c/[^"]+/messages\?before=\d+)"', html).group(1)
    older = web.get(url, **HTMX).content.decode()
    assert "line 00" in older and "line 09" in older and "line 10" not in older
    assert "older-loader" not in older


def test_a_streaming_reply_is_known_to_the_page(web, user):
    reply = services.reply_start(user=user, content="tell me")
    html = web.get(f"/c/{reply.session.pk}").content.decode()
    assert f'data-streaming="{reply.assistant_message.pk}"' in html
    assert 'data-status="streaming"' in html


def test_error_reply_offers_a_retry(web, user):
    session = start(user)
    say(session, "question")
    MessageFactory(
        session=session,
        role=Message.Role.ASSISTANT,
        content="partial",
        status=Message.Status.ERROR,
        error="upstream timed out",
    )
    html = web.get(f"/c/{session.pk}").content.decode()
    assert "upstream timed out" in html and "data-retry" in html


def test_tools_used_are_shown(web, user, model, run):
    session = start(user, model_id=model.pk, run_id=run.pk)
    MessageFactory(
        session=session,
        role=Message.Role.ASSISTANT,
        content="You made 3 trades.",
        tools_used=[{"name": "get_trades", "arguments": {"symbol": "AAPL"}, "result": "3 trades"}],
    )
    html = web.get(f"/c/{session.pk}").content.decode()
    assert "get_trades" in html and "symbol=AAPL" in html and "3 trades" in html


def test_search_finds_a_word_in_a_message_body_with_a_snippet(web, user, other_user):
    mine = start(user, title="Groceries")
    say(mine, "remember to buy pomegranates tomorrow")
    theirs = start(other_user, title="Theirs")
    say(theirs, "pomegranates are mine")
    html = web.get("/search?q=pomegranates", **HTMX).content.decode()
    assert "Groceries" in html
    assert "<mark>pomegranates</mark>" in html
    assert "Theirs" not in html
    assert web.get("/search?q=", **HTMX).content.decode().strip() == ""


def test_rename_inline(web, user):
    session = start(user)
    say(session, "first message")
    form = web.get(f"/c/{session.pk}/rename", **HTMX).content.decode()
    assert 'name="title"' in form
    response = web.post(f"/c/{session.pk}/rename", {"title": "  My plan  "}, **HTMX)
    assert response.status_code == 200
    assert "My plan" in response.content.decode()
    session.refresh_from_db()
    assert session.title == "My plan"
    assert session.title_source == ChatSession.TitleSource.USER


def test_rename_to_nothing_is_refused_and_changes_nothing(web, user):
    session = start(user, title="Keep me")
    response = web.post(f"/c/{session.pk}/rename", {"title": "   "}, **HTMX)
    assert response.status_code == 200  # htmx swaps the form back in, with the error
    assert "The title is empty." in response.content.decode()
    assert 'name="title"' in response.content.decode()
    assert web.post(f"/c/{session.pk}/rename", {"title": ""}).status_code == 400
    session.refresh_from_db()
    assert session.title == "Keep me"


def test_pin_and_archive_toggle_and_return_the_sidebar(web, user):
    session = start(user, title="Toggled")
    response = web.post(f"/c/{session.pk}/pin", **HTMX)
    assert response.status_code == 200 and "Unpin" in response.content.decode()
    session.refresh_from_db()
    assert session.pinned

    response = web.post(f"/c/{session.pk}/archive", **HTMX)
    session.refresh_from_db()
    assert session.archived and not session.is_active
    assert "Toggled" not in response.content.decode()
    assert "Toggled" in web.get("/sidebar?archived=1").content.decode()

    web.post(f"/c/{session.pk}/archive", {"archived_view": "1"}, **HTMX)
    session.refresh_from_db()
    assert not session.archived


def test_delete_removes_the_conversation_and_its_messages(web, user):
    session = start(user, title="Doomed")
    say(session, "bye")
    response = web.post(f"/c/{session.pk}/delete", **HTMX)
    assert response.status_code == 200
    assert "Doomed" not in response.content.decode()
    assert not ChatSession.objects.filter(pk=session.pk).exists()
    assert not Message.objects.filter(session_id=session.pk).exists()


def test_deleting_the_open_conversation_sends_the_page_to_a_new_chat(web, user):
    session = start(user)
    response = web.post(
        f"/c/{session.pk}/delete",
        HTTP_HX_CURRENT_URL=f"http://testserver/c/{session.pk}",
        **HTMX,
    )
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/new"


def test_writes_to_another_users_conversation_are_404_and_change_nothing(web, other_user):
    theirs = start(other_user, title="Not yours")
    for action in ["rename", "pin", "archive", "delete"]:
        response = web.post(f"/c/{theirs.pk}/{action}", {"title": "x"}, **HTMX)
        assert response.status_code == 404, action
    theirs.refresh_from_db()
    assert (theirs.title, theirs.pinned, theirs.archived) == ("Not yours", False, False)


def test_writes_need_the_csrf_token(user):
    session = start(user, title="Guarded")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(f"/c/{session.pk}/pin", **HTMX).status_code == 403
    html = client.get("/new").content.decode()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', html).group(1)
    response = client.post(f"/c/{session.pk}/pin", HTTP_X_CSRFTOKEN=token, **HTMX)
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.pinned


def test_deleted_models_conversation_is_read_only(web, user):
    model = ModelFactory(owner=user, name="Retired")
    session = start(user, model_id=model.pk)
    say(session, "old talk")
    from models_app.services import model_delete

    model_delete(user=user, model_id=model.pk)
    response = web.get(f"/c/{session.pk}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "old talk" in html and "read-only" in html
    assert 'id="composer-input"' not in html


def test_sign_up_and_sign_in_pages_render(client):
    signup = client.get("/accounts/signup/").content.decode()
    assert 'name="username"' in signup and 'name="password1"' in signup
    assert_csp_safe(signup)
    login = client.get("/accounts/login/").content.decode()
    assert 'name="username"' in login and 'name="password"' in login
    assert_csp_safe(login)


def test_sign_out_is_a_post_form(web):
    html = web.get("/new").content.decode()
    assert re.search(r'<form method="post" action="/accounts/logout/"', html)
    assert web.post("/accounts/logout/").status_code == 302
    assert web.get("/new").status_code == 302


def test_a_different_user_does_not_see_my_sidebar(client_for, user):
    start(user, title="Private plans")
    stranger = client_for(UserFactory())
    assert "Private plans" not in stranger.get("/new").content.decode()


def test_one_message_renders_alone_and_only_in_its_conversation(web, user, other_user):
    session = start(user)
    message = say(session, "**bold** answer", Message.Role.ASSISTANT)
    html = web.get(f"/c/{session.pk}/messages/{message.pk}", **HTMX).content.decode()
    assert f'id="msg-{message.pk}"' in html and "<strong>bold</strong>" in html
    elsewhere = start(user)
    assert web.get(f"/c/{elsewhere.pk}/messages/{message.pk}").status_code == 404
    assert web.get(f"/c/{session.pk}/messages/{2**63}").status_code == 404
    theirs = start(other_user)
    their_message = say(theirs, "private")
    assert web.get(f"/c/{theirs.pk}/messages/{their_message.pk}").status_code == 404


def test_a_reply_can_show_the_question_it_answers(web, user):
    reply = services.reply_start(user=user, content="what is *up*?")
    url = f"/c/{reply.session.pk}/messages/{reply.assistant_message.pk}?question=1"
    html = web.get(url, **HTMX).content.decode()
    assert f'id="msg-{reply.user_message.pk}"' in html and "<em>up</em>" in html
    question = f"/c/{reply.session.pk}/messages/{reply.user_message.pk}?question=1"
    assert web.get(question).status_code == 404


def test_error_pages_render_in_the_sites_look_without_a_request():
    from django.template.loader import render_to_string

    html = render_to_string("500.html")
    assert "Something went wrong" in html and "/static/css/app.css" in html
    assert_csp_safe(html)
