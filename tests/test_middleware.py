"""config.middleware: the Content-Security-Policy, and the middleware's async path."""

import asyncio

import pytest
from asgiref.sync import iscoroutinefunction
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import AsyncClient, RequestFactory

from config.middleware import CONTENT_SECURITY_POLICY, ContentSecurityPolicyMiddleware


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def test_connect_src_is_self_only_with_no_bare_websocket_scheme():
    policy = directives(CONTENT_SECURITY_POLICY)
    assert policy["connect-src"] == ["'self'"]
    for values in policy.values():
        assert not {"ws:", "wss:", "*", "http:", "https:"} & set(values)


@pytest.mark.django_db
def test_pages_carry_the_policy_and_the_api_does_not(client):
    response = client.get("/accounts/login/")
    assert directives(response["Content-Security-Policy"])["connect-src"] == ["'self'"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in client.get("/api/schema/")


def test_the_middleware_stays_sync_in_a_sync_chain():
    middleware = ContentSecurityPolicyMiddleware(lambda request: HttpResponse("ok"))
    assert not iscoroutinefunction(middleware)
    response = middleware(RequestFactory().get("/new"))
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_the_middleware_is_a_coroutine_in_an_async_chain():
    async def get_response(request):
        return HttpResponse("ok")

    middleware = ContentSecurityPolicyMiddleware(get_response)
    assert iscoroutinefunction(middleware)
    response = asyncio.run(middleware(RequestFactory().get("/new")))
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_under_asgi_django_runs_it_async_without_an_adapter():
    handler = ASGIHandler()  # loads the MIDDLEWARE setting for an async chain
    layer, found = handler._middleware_chain, None
    while layer is not None and found is None:
        # Unwrap Django's exception wrappers and asgiref's adapters around sync middleware.
        layer = getattr(layer, "__wrapped__", None) or getattr(layer, "awaitable", layer)
        if isinstance(layer, ContentSecurityPolicyMiddleware):
            found = layer
        layer = getattr(layer, "get_response", None)
    assert found is not None
    # A sync-only middleware would have been handed a sync get_response (async_to_sync).
    assert found.async_mode and iscoroutinefunction(found)


@pytest.mark.django_db(transaction=True)
async def test_an_asgi_request_gets_the_policy():
    response = await AsyncClient().get("/accounts/login/")
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
