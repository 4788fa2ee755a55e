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


class OperatorPresent(DomainError):
    status = 409
    code = "operator_present"
    default_message = (
        "A person is answering in this conversation; the assistant is back when they leave."
    )


class ClientIdTaken(DomainError):
    """A client_id that names another person's message in the conversation (an
    operator's, or the owner's), which a send cannot be a repeat of."""

    default_message = "This client_id names another person's message in this conversation."


class ImportTooLarge(DomainError):
    status = 413
    code = "too_large"
    default_message = "The file is too large to import."


class FolderNotFound(NotFound):
    default_message = "Folder not found."


class ShareNotFound(NotFound):
    default_message = "This conversation has no share link."


class QuotaExceeded(DomainError):
    """The user's daily token budget is spent; it resets at the next UTC midnight.

    ``retry_after`` (seconds until then) becomes REST's and SSE's Retry-After header, as
    for the rate limit.
    """

    status = 429
    code = "quota_exceeded"

    def __init__(self, *, limit: int, resets_at, retry_after: int):
        self.limit = limit
        self.resets_at = resets_at
        self.retry_after = retry_after
        hours, minutes = divmod((retry_after + 59) // 60, 60)
        wait = f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"
        super().__init__(
            f"Your daily budget of {limit:,} tokens is used up. It resets at "
            f"{resets_at:%H:%M} UTC ({resets_at:%Y-%m-%d}), in {wait}."
        )
