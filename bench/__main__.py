"""Run every benchmark once and print one report (``python -m bench`` / ``make bench``).

The database benchmarks run on a scratch database made for the run: a temporary SQLite
file, or the PostgreSQL named by BENCH_DATABASE_URL (its tables are created and dropped).
"""

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def setup_django(tmpdir: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ["DATABASE_URL"] = os.environ.get(
        "BENCH_DATABASE_URL", f"sqlite:///{tmpdir}/bench.sqlite3"
    )
    os.environ.setdefault("DEBUG", "false")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def main() -> int:
    results = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        setup_django(tmpdir)
        from bench import db_pages

        results["database"] = db_pages.run()
        try:
            from bench import streaming
        except ImportError:
            streaming = None
        if streaming is not None:
            results["streaming"] = streaming.run()
    print(json.dumps(results, indent=2))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    if streaming is not None:
        print("\nStreaming summary\n" + streaming.summary(results["streaming"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
