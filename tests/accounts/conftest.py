import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def empty_counters():
    """Start and end every test with no sign-in, sign-up or token-issue counts."""
    cache.clear()
    yield
    cache.clear()
