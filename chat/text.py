"""JSON from outside parsed once, its strings made safe to store (core.text.clean_text:
NUL and unpaired surrogates become U+FFFD; chat's modules import it from here too).
"""

import json

import orjson

from core.text import REPLACEMENT, clean_text

__all__ = ["REPLACEMENT", "MAX_JSON_DEPTH", "clean_json", "clean_text", "parse_json"]

MAX_JSON_DEPTH = 64


def clean_json(value):
    """Return a parsed JSON value with every string (keys included) cleaned."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(key): clean_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clean_json(item) for item in value]
    return value


def _depth(value, limit: int) -> int:
    """Return the nesting depth of ``value``, stopping once it passes ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return depth
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH):
    """Return the JSON value of ``data`` with its strings cleaned; raise ValueError if bad.

    Malformed JSON, NaN/Infinity, nesting deeper than ``max_depth`` and bytes that are not
    UTF-8 are all ValueError with a message for people, never a RecursionError.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "surrogate" not in str(exc):
            raise ValueError(_reason(exc)) from None
        # orjson refuses "\ud800" escapes; json accepts them, and clean_json replaces them.
        try:
            value = json.loads(data, parse_constant=_refuse_constant)
        except RecursionError:
            raise ValueError("The JSON is nested too deeply.") from None
        except ValueError:
            raise ValueError(_reason(exc)) from None
    if _depth(value, max_depth) > max_depth:
        raise ValueError(f"The JSON is nested more than {max_depth} levels deep.")
    return clean_json(value)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON.")


def _reason(exc: orjson.JSONDecodeError) -> str:
    text = str(exc)
    if "recursion" in text or "depth" in text:
        return "The JSON is nested too deeply."
    return f"The body is not valid JSON ({text.split(':')[0]})."
