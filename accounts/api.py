"""REST endpoints of accounts (SPEC 4.6, Hardening): ``POST /api/me/password/``."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import StrictCharField, StrictSerializer, errors, parse

from . import services


def _password_field():
    """Return the field of a password as sent: no whitespace trimmed, nothing coerced."""
    return StrictCharField(trim_whitespace=False, max_length=4096, write_only=True)


class PasswordChangeSerializer(StrictSerializer):
    old_password = _password_field()
    new_password = _password_field()


class PasswordChangedSerializer(serializers.Serializer):
    tokens_revoked = serializers.IntegerField(help_text="API tokens deleted, this one included.")


class PasswordChangeView(APIView):
    @extend_schema(
        operation_id="me_password_change",
        request=PasswordChangeSerializer,
        responses={
            200: PasswordChangedSerializer,
            **errors(
                400,
                descriptions={
                    400: "Invalid: the old password is wrong, or the new one fails the "
                    "password rules (``fields`` says which).",
                },
            ),
        },
        summary="Change your password",
        description="Signs out your other browser sessions and revokes all your API tokens "
        "(the one making this call included: it then gets 401). A browser session making "
        "the call stays signed in.",
    )
    def post(self, request):
        data = parse(PasswordChangeSerializer, request.data)
        own_session = isinstance(request.successful_authenticator, SessionAuthentication)
        revoked = services.password_change(
            user=request.user,
            old_password=data["old_password"],
            new_password=data["new_password"],
            request=request._request if own_session else None,
        )
        return Response({"tokens_revoked": revoked})
