"""What conversations refuse. DomainError and NotFound, their bases, are core's (every app
raises them); chat's modules import them from here along with chat's own.

Each error names its HTTP ``status`` and stable ``code`` here, once: REST answers with
them, SSE too, and the WebSocket's ``error`` event carries the same ``code``.
"""

from core.exceptions import DomainError, NotFound


class ConversationNotFound(NotFound):
    default_message = "Conversation not found."


class MessageNotFound(NotFound):
    default_message = "Message not found."


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
