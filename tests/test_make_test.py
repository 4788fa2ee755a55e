"""`make test` and `.ci/run`: what they run, with what, and that every failure fails them.

The Makefile and .ci/run are run for real, with stand-ins on PATH or in a fake virtualenv
for the heavy steps (pip, ruff, pytest, PostgreSQL, Redis), so only their own logic runs.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
E2E_SKIP_REASON = "is not installed; run as root or apt-get install chromium; .ci/run runs these"


def stub(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def clean_environ(**extra: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REQUIRE_SERVICES", "PARLOR_CHROMIUM", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    }
    env.update(extra)
    return env


@pytest.fixture
def fake_venv(tmp_path) -> Path:
    """A virtualenv whose tools record how they were called; pytest exits with $PYTEST_RC."""
    venv = tmp_path / "venv"
    bin_dir = venv / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "log"
    log.mkdir()
    stub(bin_dir, "python", f'echo "$*" >> {log}/python.args; env > {log}/python.env')
    stub(bin_dir, "ruff", "exit 0")
    stub(bin_dir, "pip", "exit 0")
    stub(bin_dir, "pytest", f'env > {log}/pytest.env; exit "${{PYTEST_RC:-0}}"')
    future = time.time() + 3600  # newer than requirements*.txt: nothing to install
    for stamp in (".installed", ".installed-dev"):
        (venv / stamp).touch()
        os.utime(venv / stamp, (future, future))
    return venv


def make_test(venv: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "test", f"VENV={venv}"],
        cwd=ROOT,
        env=clean_environ(PARLOR_CHROMIUM=sys.executable, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def read_env(path: Path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.mark.parametrize("code", [1, 5])
def test_make_test_fails_when_pytest_fails_or_collects_nothing(fake_venv, code):
    """5 is pytest's "no tests were collected": an empty run is a failed run."""
    result = make_test(fake_venv, PYTEST_RC=str(code))
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Error" in result.stderr
    assert make_test(fake_venv, PYTEST_RC="0").returncode == 0


def test_make_test_runs_pytest_without_the_apps_services(fake_venv):
    """Exported in the shell, the app's Redis, provider and settings module stay out."""
    result = make_test(
        fake_venv,
        REDIS_URL="redis://prod-redis.invalid:6379/0",
        LLM_BASE_URL="https://prod-llm.invalid/v1",
        OPENAI_API_KEY="sk-hostile",
        DJANGO_SETTINGS_MODULE="config.settings.production",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    log = fake_venv.parent / "log"
    for tool in ("pytest", "python"):
        seen = read_env(log / f"{tool}.env")
        assert seen["DJANGO_SETTINGS_MODULE"] == "config.settings.test", tool
        assert not {"REDIS_URL", "LLM_BASE_URL", "OPENAI_API_KEY"} & set(seen), tool
    assert "makemigrations --check --dry-run" in (log / "python.args").read_text()


@pytest.mark.parametrize("failing", ["make", "pg_isready"])
def test_ci_run_stops_at_the_first_failure(tmp_path, failing):
    """.ci/run fails when `make test` fails (pytest's 5 included) or a service is missing."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "calls"
    for name in ("make", "pg_isready", "redis-cli", "redis-server", "pg_ctlcluster", "sleep"):
        rc = 2 if name == failing else 0
        stub(stubs, name, f'echo "{name} $*" >> {calls}; exit {rc}')
    env = clean_environ(PATH=f"{stubs}:{os.environ['PATH']}")
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "CI passed" not in output
    assert "make test on PostgreSQL" not in output
    # The control: with nothing failing, the same stand-ins make it pass.
    for name in ("make", "pg_isready"):
        stub(stubs, name, "exit 0")
    passed = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    assert passed.returncode == 0 and "CI passed" in passed.stdout, passed.stdout + passed.stderr


def ensure_chromium(tmp_path, *, uid: int, chromium: Path, **env: str):
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    stub(stubs, "id", f"echo {uid}")
    stub(stubs, "apt-get", f"echo apt-get >> {tmp_path}/apt-get.calls; exit 1")
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-chromium.sh")],
        env=clean_environ(
            PATH=f"{stubs}:{os.environ['PATH']}", PARLOR_CHROMIUM=str(chromium), **env
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ensure_chromium_carries_on_without_chromium_when_not_root(tmp_path):
    missing = tmp_path / "no-chromium"
    result = ensure_chromium(tmp_path, uid=1000, chromium=missing)
    assert result.returncode == 0, result.stderr
    assert f"Chromium ({missing}) is not installed" in result.stderr
    assert "end-to-end tests (tests/e2e) will be skipped" in result.stderr
    assert not (tmp_path / "apt-get.calls").exists()


def test_ensure_chromium_fails_without_chromium_in_ci(tmp_path):
    missing = tmp_path / "no-chromium"
    for uid in (1000, 0):
        result = ensure_chromium(tmp_path, uid=uid, chromium=missing, REQUIRE_SERVICES="1")
        assert result.returncode == 1, (uid, result.stderr)
        assert "is required (REQUIRE_SERVICES=1)" in result.stderr


def test_ensure_chromium_is_quiet_when_chromium_is_there(tmp_path):
    result = ensure_chromium(tmp_path, uid=1000, chromium=Path(sys.executable))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def run_e2e(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """pytest over tests/e2e with no Chromium, on a SQLite database of its own."""
    base = clean_environ(
        PARLOR_CHROMIUM=str(tmp_path / "no-chromium"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **env,
    )
    base.pop("TEST_DATABASE_NAME", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_browser_tests_skip_saying_why_without_chromium(tmp_path):
    result = run_e2e(tmp_path, "tests/e2e")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert " skipped" in output and " passed" not in output and " failed" not in output
    assert f"Chromium ({tmp_path / 'no-chromium'}) {E2E_SKIP_REASON}" in output


def test_browser_tests_fail_without_chromium_in_ci(tmp_path):
    one = "tests/e2e/test_chat_browser.py::test_search_finds_a_word_from_a_message_body"
    result = run_e2e(tmp_path, one, REQUIRE_SERVICES="1")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Chromium is required (REQUIRE_SERVICES=1)" in output
    assert " skipped" not in output
