"""Apps import downward: accounts, then models_app, then chat; core imports no app."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each package, and the packages it must not import (nor any module of theirs).
LOWER = {
    "accounts": {"chat", "models_app"},
    "models_app": {"chat"},
    "core": {"accounts", "chat", "models_app"},
}


def imported_packages(path: Path) -> set[str]:
    """Return the top-level packages ``path`` imports by absolute name, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(LOWER))
def test_a_lower_package_imports_nothing_from_a_higher_one(package):
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted(imported_packages(path) & LOWER[package])
    ]
    assert offenders == []


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from chat.api.views import errors\n")
    assert "chat" in imported_packages(module)
