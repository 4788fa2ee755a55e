"""What models_app refuses; the doors map these like every DomainError."""

from core.exceptions import NotFound


class ModelNotFound(NotFound):
    default_message = "Model not found."


class RunNotFound(NotFound):
    default_message = "Run not found."
