"""The admin of models and runs: an owner or a run's model cannot be moved (invariant 6)."""

import pytest
from django.urls import reverse

from chat import services
from models_app.models import Run
from tests.factories import RunFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


def change_form_data(client, url) -> dict:
    """Return what the change page would post back unchanged: its form and its inlines."""
    context = client.get(url).context
    form = context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data = {
        name: value if not isinstance(value, list) else str(value).replace("'", '"')
        for name, value in data.items()
    }
    for formset in (inline.formset for inline in context["inline_admin_formsets"]):
        management = formset.management_form
        data |= {management.add_prefix(n): management[n].value() for n in management.fields}
        for inline_form in formset.forms:
            for name in inline_form.fields:
                value = inline_form[name].value()
                if value is not None:
                    data[inline_form.add_prefix(name)] = value
    return data


def test_staff_cannot_give_a_model_to_another_owner(staff_client, user, model, other_user):
    session = services.reply_start(user=user, content="About my model", model_id=model.pk).session
    url = reverse("admin:models_app_model_change", args=[model.pk])
    data = change_form_data(staff_client, url) | {"owner": other_user.pk, "name": "Renamed"}

    response = staff_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    model.refresh_from_db()
    assert (model.name, model.owner) == ("Renamed", user)
    session.refresh_from_db()
    assert (session.user, session.model) == (user, model)


def test_staff_cannot_move_a_run_to_another_model(staff_client, user, run, other_user):
    theirs = RunFactory(model__owner=other_user).model
    url = reverse("admin:models_app_run_change", args=[run.pk])
    data = change_form_data(staff_client, url) | {"model": theirs.pk, "status": "failed"}

    response = staff_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    run = Run.objects.get(pk=run.pk)
    assert (run.status, run.model.owner) == ("failed", user)


def test_a_new_model_or_run_still_gets_its_owner_or_model(staff_client, user, model):
    page = staff_client.get(reverse("admin:models_app_model_add")).content.decode()
    assert 'name="owner"' in page
    page = staff_client.get(reverse("admin:models_app_run_add")).content.decode()
    assert 'name="model"' in page
