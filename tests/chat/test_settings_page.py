"""The settings page (/settings/, SPEC 4.6): each form saves through the services and
comes back with a message, or shows its error and changes nothing; API tokens shown
once; the export zip; deleting every conversation; the theme on <html>."""

import io
import json
import re
import zipfile

import pytest
from django.test import AsyncClient, Client

from accounts.models import ApiToken, User
from accounts.tokens import token_issue, token_user
from chat.models import ChatSession
from tests.factories import MessageFactory

from .conftest import start

pytestmark = pytest.mark.django_db

PAGE = "/settings/"


def fresh(user) -> User:
    return User.objects.get(pk=user.pk)


def flash(client) -> str:
    return client.get(PAGE).content.decode()


def test_signed_out_people_are_sent_to_sign_in():
    for path in [PAGE, "/settings/export"]:
        response = Client().get(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    response = Client().post("/settings/profile", {"display_name": "x"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_page_shows_every_section_with_the_users_values(web, user):
    User.objects.filter(pk=user.pk).update(
        display_name="Ada", theme="dark", about_me="I teach.", default_llm="parlor-dev-mini"
    )
    response = web.get(PAGE)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    for title in [
        "Profile",
        "Appearance",
        "Custom instructions",
        "Default LLM",
        "Password",
        "API tokens",
        "Your data",
    ]:
        assert f">{title}</h2>" in html
    assert 'value="Ada"' in html
    assert re.search(r'<input type="radio" name="theme" value="dark"[^>]* checked', html)
    assert "I teach.</textarea>" in html
    assert re.search(r'<option value="parlor-dev-mini" selected>', html)
    assert 'href="/accounts/password/"' in html
    assert 'href="/settings/export"' in html


@pytest.mark.parametrize(
    ("path", "data", "field", "value", "section"),
    [
        ("/settings/profile", {"display_name": " Ada  L "}, "display_name", "Ada L", "profile"),
        ("/settings/appearance", {"theme": "light"}, "theme", "light", "appearance"),
        (
            "/settings/instructions",
            {"about_me": "I teach maths.", "response_style": "Short."},
            "about_me",
            "I teach maths.",
            "instructions",
        ),
        (
            "/settings/llm",
            {"default_llm": "parlor-dev-large"},
            "default_llm",
            "parlor-dev-large",
            "llm",
        ),
        ("/settings/llm", {"default_llm": ""}, "default_llm", "", "llm"),
    ],
)
def test_each_form_saves_and_comes_back_with_a_message(
    web, user, path, data, field, value, section
):
    response = web.post(path, data)
    assert response.status_code == 302
    assert response["Location"] == f"/settings/#{section}"
    assert getattr(fresh(user), field) == value
    assert 'class="flash-success"' in flash(web)


@pytest.mark.parametrize(
    ("path", "data", "error"),
    [
        ("/settings/profile", {"display_name": "x" * 81}, "at most 80 characters"),
        ("/settings/profile", {"display_name": "a\x07b"}, "control characters"),
        ("/settings/appearance", {"theme": "sepia"}, "Select a valid choice"),
        ("/settings/appearance", {}, "This field is required"),
        ("/settings/instructions", {"about_me": "x" * 1501}, "at most 1500 characters"),
        ("/settings/llm", {"default_llm": "gpt-unknown"}, "is not an LLM offered here"),
    ],
)
def test_a_refused_form_shows_its_error_and_changes_nothing(web, user, path, data, error):
    before = fresh(user)
    response = web.post(path, data)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'class="field-error" role="alert"' in html
    assert error in html.replace("&quot;", '"').replace("&#x27;", "'")
    after = fresh(user)
    for name in ["display_name", "theme", "about_me", "response_style", "default_llm"]:
        assert getattr(after, name) == getattr(before, name)


def test_the_refused_value_stays_in_its_form(web):
    html = web.post("/settings/instructions", {"about_me": "y" * 1501}).content.decode()
    assert "y" * 1501 + "</textarea>" in html


def test_a_new_token_is_shown_once_then_listed_without_its_value(web, user):
    response = web.post("/settings/tokens", {"name": "backup script"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw = re.search(r'id="new-token-value"[^>]* value="([^"]+)"', response.content.decode())[1]
    assert token_user(raw) == user
    assert ApiToken.objects.get(user=user).name == "backup script"
    again = web.get(PAGE).content.decode()
    assert "backup script" in again and raw not in again and "new-token-value" not in again


@pytest.mark.parametrize("name", ["", "x" * 81])
def test_a_token_without_a_good_name_is_refused(web, user, name):
    response = web.post("/settings/tokens", {"name": name})
    assert response.status_code == 400
    assert 'class="field-error" role="alert"' in response.content.decode()
    assert not ApiToken.objects.exists()


def test_revoking_a_token_stops_it(web, user):
    raw, token = token_issue(user=user, name="ci")
    response = web.post(f"/settings/tokens/{token.pk}/revoke")
    assert response.status_code == 302 and response["Location"] == "/settings/#tokens"
    assert token_user(raw) is None
    assert "The token was revoked" in flash(web)


def test_another_users_token_cannot_be_revoked_here(web, other_user):
    raw, theirs = token_issue(user=other_user, name="theirs")
    assert web.post(f"/settings/tokens/{theirs.pk}/revoke").status_code == 404
    assert web.get(f"/settings/tokens/{theirs.pk}/revoke").status_code == 405
    assert token_user(raw) == other_user


def test_the_token_list_names_each_token_and_its_times(web, user):
    _, token = token_issue(user=user, name="laptop")
    html = web.get(PAGE).content.decode()
    row = re.search(rf'<tr id="token-{token.pk}">(.*?)</tr>', html, re.S)[1]
    assert "laptop" in row and "never" in row and "Revoke" in row


def conversation(user, title: str, text: str):
    session = start(user)
    ChatSession.objects.filter(pk=session.pk).update(title=title)
    MessageFactory(session=session, role="user", content=text)
    return session


def read_zip(content: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(content))


def test_export_is_a_zip_of_every_conversation_as_json_and_markdown(web, user, other_user):
    trip = conversation(user, "Trip to Lisbon", "Where to eat?")
    roses = conversation(user, "Roses", "Which roses for shade?")
    ChatSession.objects.filter(pk=roses.pk).update(archived=True)
    conversation(other_user, "Not mine", "secret")
    User.objects.filter(pk=user.pk).update(about_me="I teach.")
    response = web.get("/settings/export")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert re.fullmatch(
        r'attachment; filename="parlor-export-\d{4}-\d\d-\d\d\.zip"',
        response["Content-Disposition"],
    )
    archive = read_zip(b"".join(response.streaming_content))
    names = archive.namelist()
    assert {"index.md", "account.json"} <= set(names)
    for session in (trip, roses):
        short = str(session.pk)[:8]
        (json_name,) = [n for n in names if n.endswith(f"-{short}.json")]
        (md_name,) = [n for n in names if n.endswith(f"-{short}.md")]
        assert json_name.startswith("conversations/") and md_name == json_name[:-4] + "md"
        data = json.loads(archive.read(json_name))
        assert data["format"] == "parlor.conversation"
        assert data["conversation"]["id"] == str(session.pk)
        assert archive.read(md_name).decode().startswith("# ")
        assert md_name in archive.read("index.md").decode()
    assert len([n for n in names if n.startswith("conversations/")]) == 4
    contents = b"".join(archive.read(n) for n in names).decode()
    assert "Where to eat?" in contents and "Which roses for shade?" in contents
    assert "Not mine" not in contents and "secret" not in contents
    assert json.loads(archive.read("account.json"))["about_me"] == "I teach."


def test_an_exported_conversation_imports_back(web, user):
    from rest_framework.test import APIClient

    conversation(user, "Round trip", "Hello there")
    archive = read_zip(b"".join(web.get("/settings/export").streaming_content))
    (name,) = [n for n in archive.namelist() if n.endswith(".json") and "conversations/" in n]
    client = APIClient()
    client.force_login(user)
    response = client.post("/api/sessions/import/", json.loads(archive.read(name)), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["title"] == "Round trip"


def test_export_with_no_conversations_is_an_index_and_the_settings(web):
    archive = read_zip(b"".join(web.get("/settings/export").streaming_content))
    assert sorted(archive.namelist()) == ["account.json", "index.md"]


@pytest.mark.django_db(transaction=True)
async def test_export_under_asgi_streams_the_zip_in_chunks(user):
    from asgiref.sync import sync_to_async

    from chat import views_settings

    await sync_to_async(conversation)(user, "Async", "x" * 200_000)
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get("/settings/export")
    assert response.status_code == 200
    assert response.is_async
    chunks = [chunk async for chunk in response.streaming_content]
    assert max(len(chunk) for chunk in chunks) <= views_settings.CHUNK_BYTES
    assert "index.md" in read_zip(b"".join(chunks)).namelist()


def test_delete_all_needs_the_typed_confirmation(web, user, other_user):
    conversation(user, "One", "a")
    conversation(user, "Two", "b")
    theirs = conversation(other_user, "Theirs", "c")
    response = web.post("/settings/delete-all", {"confirm": "yes"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "exactly to delete every conversation" in html
    assert '<details class="danger-zone" open>' in html
    assert ChatSession.objects.filter(user=user).count() == 2

    response = web.post("/settings/delete-all", {"confirm": "delete all"})
    assert response.status_code == 302 and response["Location"] == "/settings/#data"
    assert not ChatSession.objects.filter(user=user).exists()
    assert ChatSession.objects.filter(pk=theirs.pk).exists()
    assert "2 conversation(s) deleted." in flash(web)


def test_writes_need_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/settings/appearance", {"theme": "dark"}).status_code == 403
    assert client.post("/settings/delete-all", {"confirm": "delete all"}).status_code == 403
    assert fresh(user).theme == "system"


@pytest.mark.parametrize(
    ("theme", "attribute", "meta"),
    [
        ("system", 'data-theme="system"', "light dark"),
        ("light", 'data-theme="light"', "light"),
        ("dark", 'data-theme="dark"', "dark"),
    ],
)
@pytest.mark.parametrize("path", ["/new", PAGE, "/models/", "/accounts/password/"])
def test_every_page_carries_the_chosen_theme(web, user, theme, attribute, meta, path):
    User.objects.filter(pk=user.pk).update(theme=theme)
    html = web.get(path).content.decode()
    assert re.search(rf'<html lang="en" {attribute}>', html)
    assert f'<meta name="color-scheme" content="{meta}">' in html


def test_signed_out_pages_follow_the_system():
    html = Client().get("/accounts/login/").content.decode()
    assert '<html lang="en">' in html
    assert '<meta name="color-scheme" content="light dark">' in html


def test_the_top_navigation_links_to_settings(web):
    assert 'href="/settings/"' in web.get("/models/").content.decode()
