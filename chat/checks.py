"""System checks for settings that would break streaming in production."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.compatibility, deploy=True)
def check_shared_channel_layer(app_configs, **kwargs):
    """Warn when production runs on the in-memory channel layer."""
    if settings.DEBUG or settings.REDIS_URL:
        return []
    return [
        Warning(
            "REDIS_URL is not set: the in-memory channel layer is per process, so a reply "
            "streamed by one server process cannot be followed or stopped from another.",
            hint="Set REDIS_URL (channels-redis), or run exactly one server process.",
            id="parlor.W001",
        )
    ]
