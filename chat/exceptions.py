"""Domain errors. Every transport turns them into its own error shape; none is a 500.

Each error names its HTTP ``status`` and stable ``code`` here, once: REST answers with
them, SSE too, and the WebSocket's ``error`` event carries the same ``code``.
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


class ConversationNotFound(NotFound):
    default_message = "Conversation not found."


class MessageNotFound(NotFound):
    default_message = "Message not found."


class ModelNotFound(NotFound):
    default_message = "Model not found."


class RunNotFound(NotFound):
    default_message = "Run not found."


class InvalidContext(DomainError):
    code = "invalid_context"
    default_message = "That run does not belong to that model."


class EmptyMessage(DomainError):
    code = "empty_message"
    default_message = "The message is empty."


class MessageTooLong(DomainError):
    code = "message_too_long"


class ConversationReadOnly(DomainError):
    code = "read_only"
    default_message = (
        "The model or run of this conversation was deleted; it can be read but not continued."
    )


class GenerationInProgress(DomainError):
    status = 409
    code = "generation_in_progress"
    default_message = "A reply is still being written in this conversation."
