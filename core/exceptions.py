"""The base of every domain error. Every transport turns them into its own error shape;
none is a 500.

Each error names its HTTP ``status`` and stable ``code`` once, on its class: REST answers
with them, SSE too, and the WebSocket's ``error`` event carries the same ``code``.
"""


class DomainError(Exception):
    """A request the domain refuses; ``code`` is stable, the message is for people."""

    status = 400
    code = "invalid"
    default_message = "The request is not valid."

    def __init__(self, message: str | None = None, *, field: str | None = None):
        self.message = message or self.default_message
        self.field = field
        super().__init__(self.message)


class NotFound(DomainError):
    """Unknown or someone else's object; both answer the same (invariant 6)."""

    status = 404
    code = "not_found"
    default_message = "Not found."


class UnknownLLM(DomainError):
    """An LLM name the provider does not list (or LLM_MODELS leaves out)."""

    code = "unknown_llm"
    default_message = "That LLM is not available here."
