"""nginx for the production tests: Debian's, installed by scripts/ensure-nginx.sh."""

import os
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from tests.chat.conftest import dev_llm_server  # noqa: F401  (the development LLM)


def nginx_path() -> str:
    return os.environ.get("PARLOR_NGINX", "/usr/sbin/nginx")


def nginx_installed() -> bool:
    path = nginx_path()
    return os.path.isfile(path) and os.access(path, os.X_OK)


@pytest.fixture(scope="session")
def nginx() -> str:
    """Return nginx's path: installed when missing (as root), else skip; in CI, else fail."""
    if not nginx_installed():
        script = Path(settings.BASE_DIR) / "scripts" / "ensure-nginx.sh"
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
        note = (result.stderr or result.stdout).strip()
        if not nginx_installed():
            if os.environ.get("REQUIRE_SERVICES"):
                pytest.fail(f"nginx is required (REQUIRE_SERVICES=1) and missing: {note}")
            pytest.skip(f"nginx ({nginx_path()}) is not installed and cannot be: {note}")
    return nginx_path()
