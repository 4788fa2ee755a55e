"""The WebSocket's origin check and its token subprotocol, through config.asgi's real stack."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.tokens import token_issue
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "127.0.0.1:8000"


@database_sync_to_async
def user_with_token():
    user = UserFactory()
    raw, _ = token_issue(user=user)
    return user, raw


@database_sync_to_async
def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def connect(
    *,
    origin: str | None,
    host: str | None = HOST,
    token: str | None = None,
    cookie: str | None = None,
    subprotocols: list[str] | None = None,
    scheme: str | None = None,
    extra_headers: tuple = (),
) -> tuple[bool, object]:
    """Open /ws/chat/ on config.asgi.application; return (accepted, subprotocol or code)."""
    from config.asgi import application

    headers = [(name.encode(), value.encode()) for name, value in extra_headers]
    for name, value in (("host", host), ("origin", origin), ("cookie", cookie)):
        if value is not None:
            headers.append((name.encode(), value.encode()))
    path = f"/ws/chat/?token={token}" if token else "/ws/chat/"
    communicator = WebsocketCommunicator(
        application, path, headers=headers, subprotocols=subprotocols
    )
    if scheme:
        communicator.scope["scheme"] = scheme
    accepted, detail = await communicator.connect(timeout=5)
    if accepted:
        await communicator.disconnect()
    return accepted, detail


# Origin -------------------------------------------------------------------------------


async def test_a_page_on_another_port_of_the_same_host_is_refused():
    user, raw = await user_with_token()
    cookie = await session_cookie(user)
    assert (await connect(origin="http://127.0.0.1:1", token=raw))[0] is False
    assert (await connect(origin="http://127.0.0.1:1", cookie=cookie))[0] is False
    # The default port is a port too: http://127.0.0.1 is port 80, not 8000.
    assert (await connect(origin="http://127.0.0.1", cookie=cookie))[0] is False


async def test_the_servers_own_origin_with_its_port_is_accepted():
    user, raw = await user_with_token()
    cookie = await session_cookie(user)
    assert (await connect(origin="http://127.0.0.1:8000", token=raw))[0] is True
    assert (await connect(origin="http://127.0.0.1:8000", cookie=cookie))[0] is True
    assert (await connect(origin="http://parlor.test", host="parlor.test", cookie=cookie))[
        0
    ] is True
    assert (await connect(origin="http://parlor.test:80", host="PARLOR.test", cookie=cookie))[
        0
    ] is True


@pytest.mark.parametrize(
    "origin", ["null", "http://localhost:8000", "https://127.0.0.1:8000", "file://", "x"]
)
async def test_other_origins_are_refused(origin):
    _, raw = await user_with_token()
    assert (await connect(origin=origin, token=raw))[0] is False


async def test_the_scheme_must_match_too_as_a_proxy_reports_it(settings):
    _, raw = await user_with_token()
    origin, host = "https://parlor.test", "parlor.test"
    assert (await connect(origin=origin, host=host, token=raw, scheme="wss"))[0] is True
    assert (await connect(origin=origin, host=host, token=raw, scheme="ws"))[0] is False
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    behind_proxy = {"host": host, "token": raw, "scheme": "ws"}
    forwarded = (("x-forwarded-proto", "https"),)
    assert (await connect(origin=origin, extra_headers=forwarded, **behind_proxy))[0] is True
    assert (await connect(origin="http://parlor.test", **behind_proxy))[0] is True
    forwarded = (("x-forwarded-proto", "http"),)
    assert (await connect(origin=origin, extra_headers=forwarded, **behind_proxy))[0] is False


async def test_csrf_trusted_origins_are_accepted(settings):
    user, _ = await user_with_token()
    cookie = await session_cookie(user)
    settings.CSRF_TRUSTED_ORIGINS = ["http://127.0.0.1:1", "https://*.example.com"]
    assert (await connect(origin="http://127.0.0.1:1", cookie=cookie))[0] is True
    assert (await connect(origin="https://app.example.com", cookie=cookie))[0] is True
    assert (await connect(origin="http://app.example.com", cookie=cookie))[0] is False
    assert (await connect(origin="http://127.0.0.1:2", cookie=cookie))[0] is False


async def test_the_host_must_be_an_allowed_host(settings):
    _, raw = await user_with_token()
    settings.ALLOWED_HOSTS = ["parlor.test"]
    assert (await connect(origin="http://parlor.test", host="parlor.test", token=raw))[0]
    assert not (await connect(origin="http://evil.test", host="evil.test", token=raw))[0]
    assert not (await connect(origin="http://parlor.test", host=None, token=raw))[0]


async def test_a_client_without_an_origin_header_may_connect_with_a_token():
    """Not a browser: it carries nobody's cookie, so the origin check has nothing to guard."""
    _, raw = await user_with_token()
    assert (await connect(origin=None, token=raw))[0] is True
    assert (await connect(origin=None, host=None, token=raw))[0] is True
    assert (await connect(origin=None))[0] is False  # and without a token, nobody


# Token subprotocol --------------------------------------------------------------------


async def test_a_token_offered_as_a_subprotocol_authenticates_and_parlor_is_answered():
    _, raw = await user_with_token()
    accepted, subprotocol = await connect(
        origin="http://127.0.0.1:8000", subprotocols=["parlor", f"bearer.{raw}"]
    )
    assert (accepted, subprotocol) == (True, "parlor")


@pytest.mark.parametrize("offered", [["parlor", "bearer.not-a-token"], ["parlor", "bearer."]])
async def test_a_bad_subprotocol_token_is_refused(offered):
    accepted, code = await connect(origin="http://127.0.0.1:8000", subprotocols=offered)
    assert (accepted, code) == (False, 4401)


async def test_a_cookie_session_offering_parlor_is_answered_parlor():
    user, _ = await user_with_token()
    cookie = await session_cookie(user)
    accepted, subprotocol = await connect(
        origin="http://127.0.0.1:8000", cookie=cookie, subprotocols=["parlor"]
    )
    assert (accepted, subprotocol) == (True, "parlor")


async def test_the_query_token_still_works_and_answers_no_subprotocol():
    _, raw = await user_with_token()
    assert await connect(origin="http://127.0.0.1:8000", token=raw) == (True, None)
