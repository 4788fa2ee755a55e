"""A signed-out person (an expired or ended sign-in), through Django's test client: a page
redirects to sign in with ``next``; an htmx request gets a 401 with the "You are signed
out" notice linking there with ``next`` back to the page it came from, and
``HX-Trigger: parlor:signed-out`` for the page (static/js/app.js); nothing changes."""

import pytest

from tests.chat.conftest import HTMX, start

pytestmark = pytest.mark.django_db


def test_htmx_requests_of_a_signed_out_person_get_a_401_notice_with_next(client, user):
    session = start(user)
    page = f"http://testserver/c/{session.pk}?tag=work"
    for method, url in [
        ("get", "/sidebar"),
        ("get", "/sidebar/more?group=general&offset=0"),
        ("get", "/search?q=x"),
        ("get", f"/c/{session.pk}/rename"),
        ("post", f"/c/{session.pk}/rename"),
        ("post", f"/c/{session.pk}/pin"),
        ("post", f"/c/{session.pk}/delete"),
        ("get", f"/c/{session.pk}/tags"),
        ("post", f"/c/{session.pk}/tags"),
        ("get", "/signed-in"),
    ]:
        response = getattr(client, method)(url, HTTP_HX_CURRENT_URL=page, **HTMX)
        assert response.status_code == 401, url
        assert response["HX-Trigger"] == "parlor:signed-out", url
        html = response.content.decode()
        assert "You are signed out." in html, url
        assert f'href="/accounts/login/?next=%2Fc%2F{session.pk}%3Ftag%3Dwork"' in html, url
    session.refresh_from_db()
    assert not session.pinned and session.title == ""


def test_the_next_of_a_signed_out_answer_stays_on_this_site(client):
    response = client.get("/sidebar", HTTP_HX_CURRENT_URL="https://evil.example/phish", **HTMX)
    assert response.status_code == 401
    assert 'href="/accounts/login/?next=%2Fnew"' in response.content.decode()


def test_pages_of_a_signed_out_person_still_redirect_to_sign_in(client, user):
    session = start(user)
    response = client.get(f"/c/{session.pk}")
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next=/c/{session.pk}"
    assert client.get("/signed-in").status_code == 302


def test_signed_in_answers_204_and_pages_carry_the_signed_out_notice(web):
    assert web.get("/signed-in", **HTMX).status_code == 204
    html = web.get("/new").content.decode()
    assert 'id="signed-out" role="alert" data-login-url="/accounts/login/"' in html
    assert '<template id="signed-out-template">' in html
    assert 'data-signed-in-url="/signed-in"' in html
