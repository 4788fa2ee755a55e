"""REST endpoints of accounts (SPEC 4.6): ``GET/PATCH /api/me/``, ``GET/POST
/api/tokens/``, ``DELETE /api/tokens/<id>/`` and ``POST /api/me/password/``."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import StrictCharField, StrictSerializer, errors, parse

from . import selectors, services
from .models import User

TOKEN_ID = OpenApiParameter(
    "token_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The token's id."
)


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


def _setting_field(help_text: str) -> StrictCharField:
    """Return a text setting as sent: accounts.services checks and cleans it."""
    return StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text=help_text
    )


class MeSerializer(StrictSerializer):
    """Your settings, as on the settings page."""

    username = serializers.CharField(read_only=True)
    display_name = _setting_field(
        f"The name Parlor shows; empty: the username. One line, at most "
        f"{services.DISPLAY_NAME_MAX_CHARS} characters."
    )
    theme = serializers.ChoiceField(
        choices=User.Theme.choices,
        required=False,
        help_text="`system` follows the device's light or dark setting.",
    )
    about_me = _setting_field(
        f"Custom instructions: what the assistant should know about you (at most "
        f"{services.INSTRUCTIONS_MAX_CHARS} characters)."
    )
    response_style = _setting_field(
        f"Custom instructions: how you want answers (at most "
        f"{services.INSTRUCTIONS_MAX_CHARS} characters)."
    )
    default_llm = _setting_field(
        "The LLM of your new conversations, one of `GET /api/llms/`; empty: the server's."
    )


def _me(user) -> dict:
    return MeSerializer(selectors.profile_get(user=user)).data


class MeView(APIView):
    # The LLMs default_llm may name. accounts is below chat: config/api_urls.py passes
    # chat.llm.available_llms here (as_view); unset, only LLM_MODEL is offered.
    offered_llms = staticmethod(services.only_llm_model)

    @extend_schema(
        operation_id="me_retrieve",
        responses={200: MeSerializer, **errors()},
        summary="Your settings",
    )
    def get(self, request):
        return Response(_me(request.user))

    @extend_schema(
        operation_id="me_update",
        request=MeSerializer,
        responses={
            200: MeSerializer,
            **errors(
                400,
                descriptions={
                    400: "Invalid (code invalid, `fields` says which), or `default_llm` is "
                    "not an LLM offered here (code unknown_llm); nothing is changed.",
                },
            ),
        },
        summary="Change your settings",
        description="Send only what changes. The custom instructions (`about_me`, "
        "`response_style`) go into the system prompt of your conversations' replies.",
    )
    def patch(self, request):
        changes = parse(MeSerializer, request.data)
        services.profile_update(user=request.user, llms=self.offered_llms, **changes)
        return Response(_me(request.user))


class ApiTokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(
        allow_null=True, help_text="Kept to the minute; null: never used."
    )


class ApiTokenListSerializer(serializers.Serializer):
    results = ApiTokenSerializer(many=True)


class ApiTokenCreateSerializer(StrictSerializer):
    """A new API token's name."""

    name = StrictCharField(
        trim_whitespace=False,
        help_text=f"What the token is for: one line, 1 to {services.TOKEN_NAME_MAX_CHARS} "
        "characters.",
    )


class ApiTokenCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    token = serializers.CharField(help_text="The token's value: shown this once only.")
    expires_at = serializers.DateTimeField()


class TokenListView(APIView):
    @extend_schema(
        operation_id="tokens_list",
        responses={200: ApiTokenListSerializer, **errors()},
        summary="Your API tokens",
        description="The tokens that still work, newest first; never their values. Tokens "
        "from `POST /api/auth/token/` are listed too, with an empty name. Not paginated.",
    )
    def get(self, request):
        tokens = selectors.token_list(user=request.user)
        return Response({"results": ApiTokenSerializer(tokens, many=True).data})

    @extend_schema(
        operation_id="tokens_create",
        request=ApiTokenCreateSerializer,
        responses={201: ApiTokenCreatedSerializer, **errors(400)},
        summary="Create an API token",
        description="Send it as `Authorization: Bearer <token>`. Its value is in this "
        "answer only: the server keeps a digest. It expires after API_TOKEN_TTL_SECONDS.",
    )
    def post(self, request):
        name = parse(ApiTokenCreateSerializer, request.data)["name"]
        raw, token = services.token_create(user=request.user, name=name)
        body = {"id": token.pk, "name": token.name, "token": raw, "expires_at": token.expires_at}
        return Response(ApiTokenCreatedSerializer(body).data, status=status.HTTP_201_CREATED)


class TokenDetailView(APIView):
    @extend_schema(
        operation_id="tokens_revoke",
        parameters=[TOKEN_ID],
        request=None,
        responses={204: None, **errors(400, 404)},
        summary="Revoke an API token",
        description="The token gets 401 from then on (the one making this call too).",
    )
    def delete(self, request, token_id):
        services.token_revoke(user=request.user, token_id=token_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
