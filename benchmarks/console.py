"""Server-side render time of each page of the console with a million rows in the queue file.

    python -m benchmarks.console [--rows 1000000] [--repeat 15]

Issue 15 asks for each page in under 150 ms with 1,000,000 rows. The file holds finished tasks
spread over the last day (1 % failed, three queues, a password in every task's keyword
arguments) and 1,000 READY ones; each page is requested through Django's test client as a
logged-in superuser (the middleware, the admin's context and the templates included; no
network, no browser), ``--repeat`` times, and the median is reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

FILL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
INSERT INTO jobs (job_id, task_path, queue_name, priority, args, kwargs, state, enqueued_at,
                  due_at, started_at, last_attempted_at, finished_at, worker_ids, errors,
                  attempts, return_value)
SELECT printf('%032x', i), 'app.tasks.t' || (i % 5),
       CASE i % 3 WHEN 0 THEN 'default' WHEN 1 THEN 'emails' ELSE 'reports' END, 0,
       '["user' || i || '"]', '{"password": "pw' || i || '"}',
       CASE WHEN i % 100 = 7 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
       :t0 + i * :step, :t0 + i * :step, :t0 + i * :step + 10, :t0 + i * :step + 10,
       :t0 + i * :step + 5000, '["w"]',
       CASE WHEN i % 100 = 7
            THEN '[{"exception_class_path": "builtins.ValueError", "traceback": "ValueError: x\n"}]'
            ELSE '[]' END,
       1, CASE WHEN i % 100 = 7 THEN NULL ELSE '42' END
FROM n
"""
PAGES = {
    "overview": ("", {}),
    "tasks": ("tasks/", {}),
    "tasks, FAILED": ("tasks/", {"state": "FAILED"}),
    "tasks, queue + task + FAILED": (
        "tasks/",
        {"state": "FAILED", "queue": "emails", "task": "app.tasks.t2"},
    ),
    "tasks, text found": ("tasks/", {"q": "user99999"}),
    "tasks, text not found": ("tasks/", {"q": "nowhere"}),
    "tasks, by id": ("tasks/", {"id": f"{500_007:032x}"}),
    "task detail": (f"tasks/{500_007:032x}/", {}),
    "workers": ("workers/", {}),
    "queues": ("queues/", {}),
    "periodic": ("periodic/", {}),
}


def fill(path: Path, rows: int) -> None:
    from litetasks._store.clock import wall_clock_us
    from litetasks._store.connection import immediate, open_connection
    from litetasks._store.enqueueing import new_job_id
    from litetasks._store.records import NewJob
    from litetasks._store.store import Store

    day_us = 86_400_000_000
    Store(path).close()
    filler = open_connection(path, synchronous="NORMAL", busy_timeout_ms=5000)
    with immediate(filler) as db:
        db.execute(FILL, {"rows": rows, "t0": wall_clock_us() - day_us, "step": day_us // rows})
    filler.close()
    with Store(path) as store:
        store.enqueue([NewJob(job_id=new_job_id(), task_path="app.tasks.t0") for _ in range(1000)])


def measure(rows: int, repeat: int) -> dict[str, float]:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client, override_settings

    folder = Path(os.environ["LITETASKS_TEST_DIR"])
    path = folder / "console.sqlite3"
    started = time.perf_counter()
    fill(path, rows)
    print(f"filled {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    call_command("migrate", verbosity=0, run_syncdb=True)
    client = Client()
    client.force_login(User.objects.create_superuser("bench", "b@example.com", "pw"))
    tasks = {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "QUEUES": ["default", "emails", "reports"],
            "OPTIONS": {"path": str(path)},
        }
    }
    medians = {}
    with override_settings(TASKS=tasks):
        for name, (page, query) in PAGES.items():
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                response = client.get(f"/admin/litetasks/task/{page}", query)
                times.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, (name, response.status_code)
            medians[name] = statistics.median(times)
            print(f"{name:32} median {medians[name]:6.1f} ms  max {max(times):6.1f} ms", flush=True)
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    with tempfile.TemporaryDirectory(prefix="litetasks-console-") as folder:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
        os.environ["LITETASKS_TEST_DIR"] = folder
        import django

        django.setup()
        medians = measure(args.rows, args.repeat)
    slowest = max(medians, key=medians.__getitem__)
    print(f"slowest: {slowest} ({medians[slowest]:.1f} ms; target < 150 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
