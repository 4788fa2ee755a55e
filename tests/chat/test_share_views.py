"""The public page of a share link and the share panel of the chat page (SPEC 4.6)."""

from html.parser import HTMLParser

import pytest
from django.test import Client

from chat import services
from chat.models import ChatSession, Message, ShareLink
from tests.factories import UserFactory

from .conftest import HTMX

pytestmark = pytest.mark.django_db

HOSTILE = (
    "Here: <script>alert('x')</script> and ![pixel](https://evil.example/p.png) "
    "and [click](javascript:alert(1)) and <img src=x onerror=alert(1)>\n\n"
    "```python\ndef f():\n    return 1\n```"
)


def shared(user, question="Tell me", answer=HOSTILE) -> tuple[ChatSession, str]:
    session, _ = services.conversation_start(user=user)
    reply = services.reply_start(user=user, content=question, session_id=session.pk)
    services.reply_finish(
        message_id=reply.assistant_message.pk, status=Message.Status.COMPLETE, content=answer
    )
    token, _ = services.share_create(user=user, session_id=session.pk)
    return ChatSession.objects.get(pk=session.pk), token


def test_the_page_opens_signed_out_without_the_owner_and_unindexed():
    owner = UserFactory(username="secret-owner-name")
    session, token = shared(owner, question="What is a quine?", answer="A program **itself**.")
    response = Client().get(f"/s/{token}")
    assert response.status_code == 200
    page = response.content.decode()
    assert "What is a quine?" in page and "<strong>itself</strong>" in page
    assert '<meta name="robots" content="noindex, nofollow">' in page
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert "Content-Security-Policy" in response
    assert "secret-owner-name" not in page
    assert str(session.pk) not in page  # nothing that leads to the owner's conversation
    assert 'id="sidebar"' not in page and "session-groups" not in page


class Elements(HTMLParser):
    """The elements of a page's body: (tag, attributes)."""

    def __init__(self):
        super().__init__()
        self.in_body = False
        self.found: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.in_body = self.in_body or tag == "body"
        if self.in_body:
            self.found.append((tag, dict(attrs)))


def test_the_page_renders_markdown_through_the_sanitizer():
    _, token = shared(UserFactory())
    parser = Elements()
    parser.feed(Client().get(f"/s/{token}").content.decode())
    tags = [tag for tag, _ in parser.found]
    assert "script" not in tags and "img" not in tags
    for tag, attrs in parser.found:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not attrs.get("href", "").lower().startswith("javascript:"), attrs
        assert "evil.example" not in attrs.get("src", "") + attrs.get("href", "")
    # Highlighted code keeps Pygments' classes only (the CSP allows no style attribute).
    assert ("span", {"class": "k"}) in parser.found
    assert not any("style" in attrs for _, attrs in parser.found)


def test_a_signed_in_stranger_sees_it_too_and_nothing_of_the_owner(client_for):
    owner, stranger = UserFactory(username="owner-zed"), UserFactory()
    _, token = shared(owner, question="Shared question", answer="Shared answer")
    page = client_for(stranger).get(f"/s/{token}").content.decode()
    assert "Shared answer" in page and "owner-zed" not in page


@pytest.mark.parametrize(
    "token", ["x", "a" * 43, "not a token at all", "a" * 300, "%00" * 30, "..%2F..%2Fetc"]
)
def test_unknown_or_malformed_tokens_are_404(token):
    shared(UserFactory())
    assert Client().get(f"/s/{token}").status_code == 404


def test_revoked_and_deleted_links_are_404():
    owner = UserFactory()
    session, token = shared(owner)
    services.share_revoke(user=owner, session_id=session.pk)
    assert Client().get(f"/s/{token}").status_code == 404
    session, token = shared(owner)
    services.conversation_delete(user=owner, session_id=session.pk)
    assert Client().get(f"/s/{token}").status_code == 404


def test_the_panel_creates_shows_the_link_once_updates_and_revokes(user, web):
    session, _ = services.conversation_start(user=user)
    url = f"/c/{session.pk}/share"
    empty = web.get(url, **HTMX).content.decode()
    assert "Create link" in empty and "Revoke" not in empty
    created = web.post(url, **HTMX).content.decode()
    link = ShareLink.objects.get()
    token = created.split('value="http://testserver/s/')[1].split('"')[0]
    assert link.digest == services.selectors.share_digest(token)
    assert "shown only this once" in created and "Revoke link" in created
    again = web.get(url, **HTMX).content.decode()
    assert token not in again and "Shared on" in again
    updated = web.post(url, **HTMX).content.decode()
    assert token not in updated and "testserver/s/" in updated
    revoked = web.post(f"/c/{session.pk}/share/revoke", **HTMX).content.decode()
    assert "Link revoked" in revoked and "Create link" in revoked
    assert not ShareLink.objects.exists()


def test_the_settings_list_revokes_and_comes_back(user, web):
    session, token = shared(user, answer="fine")
    response = web.post(f"/c/{session.pk}/share/revoke", {"from": "settings"})
    assert response.status_code == 302 and response["Location"].endswith("#shares")
    assert Client().get(f"/s/{token}").status_code == 404


def test_the_settings_page_lists_the_links(user, other_user, web):
    session, _ = shared(user, question="Listed one", answer="ok")
    theirs, _ = shared(other_user, question="Not mine", answer="ok")
    html = web.get("/settings/").content.decode()
    assert 'id="shares"' in html and 'href="#shares"' in html
    assert "Listed one" in html and f"/c/{session.pk}/share/revoke" in html
    assert "Not mine" not in html and str(theirs.pk) not in html


def test_another_users_panel_and_revoke_are_404(user, other_user, web):
    theirs, token = shared(other_user)
    assert web.get(f"/c/{theirs.pk}/share", **HTMX).status_code == 404
    assert web.post(f"/c/{theirs.pk}/share", **HTMX).status_code == 404
    assert web.post(f"/c/{theirs.pk}/share/revoke", **HTMX).status_code == 404
    assert Client().get(f"/s/{token}").status_code == 200


def test_a_temporary_conversation_is_refused(user, web):
    session, _ = services.conversation_start(user=user, temporary=True)
    assert web.post(f"/c/{session.pk}/share", **HTMX).status_code == 400
    assert not ShareLink.objects.exists()


def test_the_chat_header_has_the_share_menu(user, web):
    session, _ = services.conversation_start(user=user)
    page = web.get(f"/c/{session.pk}").content.decode()
    assert "data-share-menu" in page and f'hx-get="/c/{session.pk}/share"' in page
    new = web.get("/new").content.decode()
    assert "data-share-menu hidden" in new
