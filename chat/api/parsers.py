"""The API's JSON parser: every malformed body is a 400, including absurd nesting."""

import codecs
import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, MultiPartParser, get_encoding

from chat.exceptions import DomainError
from chat.text import parse_json


class StrictJSONParser(JSONParser):
    """Parse with ``chat.text.parse_json``: NUL and lone surrogates in strings become
    U+FFFD; NaN/Infinity, nesting deeper than 64 levels and bad bytes are a ParseError."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        data = stream.read()
        if codecs.lookup(encoding).name != "utf-8":
            try:
                data = data.decode(encoding)
            except UnicodeDecodeError:
                raise ParseError(f"its bytes are not {encoding}")
        try:
            return parse_json(data)
        except ValueError as exc:
            raise ParseError(_reason(str(exc)))


def _reason(message: str) -> str:
    """Return parse_json's message as the reason chat.api.errors puts after
    "The request body is not valid JSON: "."""
    found = re.fullmatch(r"The body is not valid JSON \((.*)\)\.", message)
    if found:
        return found.group(1)
    return message[:1].lower() + message[1:].rstrip(".")


class UploadParser(MultiPartParser):
    """multipart/form-data, a malformed body refused in the API's words (400 ``invalid``)
    rather than as the JSON parse error the handler makes of any ParseError."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except ParseError as exc:
            raise DomainError(f"The body is not valid multipart/form-data ({exc.detail}).")
