"""Integer ids as clients send them: anything else is a clear error naming the field."""

from .exceptions import DomainError


def parse_int_id(value, *, field: str) -> int:
    """Return ``value`` as a positive id that fits a bigint, or raise a DomainError."""
    if isinstance(value, bool):
        raise DomainError(f"{field} must be an integer id.", field=field)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DomainError(f"{field} must be an integer id.", field=field) from None
    if number <= 0 or number >= 2**63:
        raise DomainError(f"{field} must be a positive integer id.", field=field)
    return number
