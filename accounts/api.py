"""REST endpoints of accounts (SPEC 4.6, Hardening): ``POST /api/me/password/``."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services

# The API's one error shape, a component the chat API declares (chat/api/errors.py); named
# here by reference, so that accounts does not import chat.
ERROR = {"$ref": "#/components/schemas/Error"}


class _PasswordField(serializers.CharField):
    """A string as sent: no number coerced into one, no whitespace trimmed."""

    def __init__(self, **kwargs):
        super().__init__(trim_whitespace=False, max_length=4096, write_only=True, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class PasswordChangeSerializer(serializers.Serializer):
    old_password = _PasswordField()
    new_password = _PasswordField()

    def to_internal_value(self, data):
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(self.fields))):
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class PasswordChangedSerializer(serializers.Serializer):
    tokens_revoked = serializers.IntegerField(help_text="API tokens deleted, this one included.")


class PasswordChangeView(APIView):
    @extend_schema(
        operation_id="me_password_change",
        request=PasswordChangeSerializer,
        responses={
            200: PasswordChangedSerializer,
            400: OpenApiResponse(
                ERROR,
                description="Invalid: the old password is wrong, or the new one fails the "
                "password rules (``fields`` says which).",
            ),
            401: OpenApiResponse(ERROR, description="Not authenticated."),
            403: OpenApiResponse(ERROR, description="A session write without a CSRF token."),
        },
        summary="Change your password",
        description="Signs out your other browser sessions and revokes all your API tokens "
        "(the one making this call included: it then gets 401). A browser session making "
        "the call stays signed in.",
    )
    def post(self, request):
        serializer = PasswordChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        own_session = isinstance(request.successful_authenticator, SessionAuthentication)
        revoked = services.password_change(
            user=request.user,
            old_password=serializer.validated_data["old_password"],
            new_password=serializer.validated_data["new_password"],
            request=request._request if own_session else None,
        )
        return Response({"tokens_revoked": revoked})
