"""The API's JSON parser: every malformed body is a 400, including absurd nesting."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """DRF's strict JSON parser (no NaN/Infinity) that also refuses too-deep nesting."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            # json raises RecursionError, not ValueError, for thousands of nested brackets.
            raise ParseError("JSON nested too deeply.")
