"""Development settings: the embedded default that README command one serves."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY", default="insecure-development-key-change-me-in-production")
