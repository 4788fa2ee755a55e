"""What every app's REST endpoints share: the one error shape, its schema, and parsing that
coerces nothing.

The error shape is ``{"error": {"code", "message", "fields"?}}``; the exception handler that
answers every error in it is chat/api/errors.py (REST_FRAMEWORK["EXCEPTION_HANDLER"]).
"""

from collections.abc import Mapping

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. not_found.")
    message = serializers.CharField(help_text="A sentence for people.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Per-field messages, when the request body or query had invalid fields.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    """Return an error in the API's one shape."""
    body = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


ERROR_DESCRIPTIONS = {
    400: "Invalid input: malformed JSON, unknown fields, wrong types or values.",
    401: "Not authenticated, or the bearer token is invalid or expired.",
    403: "Forbidden, e.g. a session-authenticated write without a CSRF token.",
    404: "Not found: unknown, or another user's.",
    409: "A reply is still being written in this conversation (generation_in_progress).",
    413: "The request body is too large.",
    429: "Rate limited; Retry-After says when to try again.",
    501: "Not available from this server.",
    503: "The server is shutting down; try again.",
}


def errors(*codes: int, descriptions: dict[int, str] | None = None) -> dict:
    """Return the documented error responses for ``codes`` (plus 401/403 when signed out).

    ``descriptions`` says more than the usual sentence about some of them.
    """
    described = {**ERROR_DESCRIPTIONS, **(descriptions or {})}
    return {
        code: OpenApiResponse(ErrorSerializer, description=described[code])
        for code in sorted({*codes, 401, 403})
    }


def parse(serializer_class, data):
    """Validate ``data`` with ``serializer_class``; return the validated dict."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StrictFieldsMixin:
    """Refuse request bodies that are not objects or that carry unknown keys."""

    def to_internal_value(self, data):
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object."]}, code="invalid"
            )
        writable = {name for name, field in self.fields.items() if not field.read_only}
        unknown = sorted(set(data) - writable)
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown field."] for name in unknown}, code="unknown_field"
            )
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A string, never a number or boolean coerced into one."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false``, not 1, "yes" or "true"."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, not a string of digits, a float or a boolean."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSerializer(StrictFieldsMixin, serializers.Serializer):
    pass
