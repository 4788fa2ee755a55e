""".env.example names every environment variable the code reads (SPEC 1), so it stays true.

Reads are found in the source: ``env("X")``/``env.int("X", …)`` (django-environ) and
``os.environ["X"]``, ``os.environ.get("X")``, ``os.environ.setdefault("X", …)``,
``os.getenv("X")``. A variable counts as documented by a ``X=`` line, commented or not.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["config", "accounts", "chat", "models_app", "manage.py"]
ENV_METHODS = {"bool", "int", "float", "str", "list", "tuple", "dict", "json", "url", "path"}
ENV_METHODS |= {"db_url", "db", "cache_url", "cache", "email_url", "search_url"}
OS_ENVIRON_METHODS = {"get", "setdefault", "pop"}


def _is_os_environ(node) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _name_argument(call: ast.Call):
    """Return the expression naming the variable a call reads, or None if it reads none."""
    func = call.func
    reads = (
        (isinstance(func, ast.Name) and func.id == "env")
        or (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "env"
            and func.attr in ENV_METHODS
        )
        or (
            isinstance(func, ast.Attribute)
            and func.attr in OS_ENVIRON_METHODS
            and _is_os_environ(func.value)
        )
        or (
            isinstance(func, ast.Attribute)
            and func.attr == "getenv"
            and isinstance(func.value, ast.Name)
            and func.value.id == "os"
        )
    )
    return call.args[0] if reads and call.args else None


def variables_read(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    # `for name in ("A", "B"): env(name)` reads A and B.
    loops: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and isinstance(node.iter, ast.Tuple | ast.List)
            and all(isinstance(e, ast.Constant) for e in node.iter.elts)
        ):
            loops[node.target.id] = [e.value for e in node.iter.elts]
    found = set()
    for node in ast.walk(tree):
        argument = None
        if isinstance(node, ast.Call):
            argument = _name_argument(node)
        elif isinstance(node, ast.Subscript) and _is_os_environ(node.value):
            argument = node.slice
        if argument is None:
            continue
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            found.add(argument.value)
        elif isinstance(argument, ast.Name) and argument.id in loops:
            found.update(loops[argument.id])
        else:
            raise AssertionError(
                f"{path.relative_to(ROOT)}:{node.lineno} reads a variable whose name this "
                "test cannot see; name it with a string literal."
            )
    return found


def all_variables_read() -> set[str]:
    names = set()
    for source in SOURCES:
        path = ROOT / source
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            names |= variables_read(file)
    return names


def documented() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def test_the_scan_sees_the_settings_reads():
    """Guard the scanner itself: reads of each kind are found."""
    settings_reads = set()
    for file in (ROOT / "config" / "settings").glob("*.py"):
        settings_reads |= variables_read(file)
    # env(), env.int(), env.bool(), env.list(), the production for-loop, test settings.
    assert {"SECRET_KEY", "DB_POOL_MAX_SIZE", "SECURE_SSL_REDIRECT"} <= settings_reads
    assert {"CSRF_TRUSTED_ORIGINS", "DATABASE_URL", "TEST_DATABASE_NAME"} <= settings_reads
    assert "DJANGO_SETTINGS_MODULE" in variables_read(ROOT / "config" / "asgi.py")


def test_env_example_documents_every_variable_the_code_reads():
    missing = sorted(all_variables_read() - documented())
    assert missing == [], f"add these to .env.example: {', '.join(missing)}"
