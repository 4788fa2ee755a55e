"""WSGI entry point (the ASGI app in config.asgi is the one Parlor is served with)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

application = get_wsgi_application()
