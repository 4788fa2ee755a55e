"""The REST API's exception handler: every expected error in the one shape of core.api."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.api import error_body
from core.exceptions import DomainError

logger = logging.getLogger(__name__)

CODES = {
    exceptions.ParseError: "invalid_json",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "invalid",
}


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """Return DRF's nested error detail as ``{"a.b": ["message", ...]}``."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors" and not prefix:
                name = "non_field_errors"
            for sub, messages in _flatten(value, name).items():
                fields.setdefault(sub, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            fields[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                name = f"{prefix}.{index}" if prefix else str(index)
                for sub, messages in _flatten(item, name).items():
                    fields.setdefault(sub, []).extend(messages)
    else:
        fields[prefix or "non_field_errors"] = [str(detail)]
    return {name: messages for name, messages in fields.items() if messages}


def _summary(fields: dict[str, list[str]]) -> str:
    name, messages = next(iter(fields.items()))
    if name == "non_field_errors":
        return messages[0]
    return f"{name}: {messages[0]}"


def exception_handler(exc, context):
    """Turn every expected error into the API's error shape; anything else stays a 500."""
    headers = {}
    if isinstance(exc, DomainError):
        fields = {exc.field: [exc.message]} if exc.field and exc.status == 400 else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            headers["Retry-After"] = str(retry_after)
        set_rollback()
        return Response(
            error_body(exc.code, exc.message, fields), status=exc.status, headers=headers
        )
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            fields = {name: list(messages) for name, messages in exc.message_dict.items()}
        else:
            fields = {"non_field_errors": list(exc.messages)}
        set_rollback()
        return Response(error_body("invalid", _summary(fields), fields), status=400)
    if isinstance(exc, RequestDataTooBig):
        set_rollback()
        return Response(
            error_body("too_large", "The request body is too large (DATA_UPLOAD_MAX_MEMORY_SIZE)."),
            status=413,
        )
    if isinstance(exc, SuspiciousOperation):
        set_rollback()
        return Response(error_body("bad_request", "The request is malformed."), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait) + (exc.wait % 1 > 0))
    code = next((c for cls, c in CODES.items() if isinstance(exc, cls)), None)
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        body = error_body("invalid", _summary(fields) if fields else "Invalid input.", fields)
    else:
        detail = exc.detail
        message = str(detail) if not isinstance(detail, dict | list) else str(exc.default_detail)
        if isinstance(exc, exceptions.ParseError):
            message = message.removeprefix("JSON parse error - ")
            message = f"The request body is not valid JSON: {message}"
        body = error_body(code or getattr(detail, "code", None) or "error", message)
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)
