"""The cost of a Prometheus scrape of ``litetasks.metrics`` with a million rows in the queue file.

    python -m benchmarks.metrics [--rows 1000000] [--ready 10000] [--scrapes 30]

Issue 15 asks that a scrape cost under 50 ms with 1,000,000 rows. The file holds ``--rows``
jobs: ``--ready`` of them READY (due, spread over three queues), 100 RUNNING under a live
worker, the rest finished over the last day (30 task paths, 3 queues, 10 % FAILED, durations
from milliseconds to minutes), and its counters hold every one of those finishes, counted as
the workers count them (a day of minutes, by queue, task, state and bucket). A scrape is
``litetasks.metrics.render()``: every query, the text format, in this process, as the view and
``litetasks metrics`` run it. Prints the median and p90 of ``--scrapes`` scrapes after one
warm-up (wall clock, and the median CPU time of this process, which other work on a shared
machine does not inflate), and the file's size.
"""

from __future__ import annotations

import argparse
import statistics
import time

from .inprocess import setup_django_in_tempdir

# Finished jobs over the last day: 30 task paths in 3 queues, 10 % FAILED, durations of
# 1 ms to ~4 min and waits of 0 to ~1 min (so the counters fill many buckets).
FILL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
INSERT INTO jobs (job_id, task_path, queue_name, priority, args, kwargs, state, enqueued_at,
                  due_at, started_at, last_attempted_at, finished_at, worker_ids, attempts,
                  return_value)
SELECT printf('%032x', i), 'app.tasks.task_' || (i % 30), 'q' || (i % 3), 0, '[]', '{}',
       CASE WHEN i % 10 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
       :t0 + i * :step, :t0 + i * :step, :t0 + i * :step + (i % 61) * 1000000,
       :t0 + i * :step + (i % 61) * 1000000,
       :t0 + i * :step + (i % 61) * 1000000 + (i % 997) * (i % 251) * 1000,
       '["w"]', 1, 'null'
FROM n
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ready", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args(argv)
    folder = setup_django_in_tempdir("litetasks-metrics-")
    from litetasks._django.compat import task_backends

    backend = task_backends["default"]
    started = time.perf_counter()
    _fill(backend, args.rows, args.ready)
    print(f"filled {args.rows:,} rows in {time.perf_counter() - started:.0f} s: {folder}")
    from litetasks.metrics import render

    render()  # warm-up: the first scrape imports prometheus_client and warms the page cache
    times, cpu = [], []
    for _ in range(args.scrapes):
        started, started_cpu = time.perf_counter(), time.process_time()
        body, _ = render()
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    times.sort()
    size = backend.config.store.path.stat().st_size
    stats_rows = _handle(backend).db.execute("SELECT count(*) FROM finished_stats").get
    print(
        f"scrape with {args.rows:,} rows ({args.ready:,} READY, 100 RUNNING; "
        f"{stats_rows:,} counter rows; file {size / 1e6:.0f} MB; {len(body):,} bytes of "
        f"metrics): median {statistics.median(times):.1f} ms, "
        f"p90 {times[int(len(times) * 0.9)]:.1f} ms over {args.scrapes} scrapes; CPU time "
        f"median {statistics.median(cpu):.1f} ms (what a busy machine does not inflate)"
    )
    return 0


def _fill(backend, rows: int, ready: int) -> None:  # type: ignore[no-untyped-def]
    from litetasks._store import stats
    from litetasks._store.clock import wall_clock_us
    from litetasks._store.enqueueing import new_job_ids
    from litetasks._store.liveness import this_process
    from litetasks._store.records import NewJob

    store = backend.store
    finished = rows - ready - 100
    now = wall_clock_us()
    day_us = 86_400_000_000
    handle = _handle(backend)
    with handle.write() as db:
        db.execute(FILL, {"rows": finished, "t0": now - day_us, "step": day_us // finished})
    for start in range(1, finished + 1, 20_000):  # counted as the workers count them
        ids = [f"{i:032x}" for i in range(start, min(start + 20_000, finished + 1))]
        with handle.write() as db:
            stats.count_finished(handle, db, ids)
    for queue in ("q0", "q1", "q2"):
        count = ready // 3 + (1 if queue == "q0" else 0) * (ready % 3)
        ids = new_job_ids(count + (100 if queue == "q0" else 0))
        store.enqueue([NewJob(job_id=i, task_path="app.tasks.wait", queue_name=queue) for i in ids])
    store.register_worker(this_process().worker("w-bench", None, now, threads=100))
    store.claim("w-bench", queues=["q0"], limit=100)
    store.checkpoint()


def _handle(backend):  # type: ignore[no-untyped-def]
    from litetasks._store.clock import wall_clock_us
    from litetasks._store.handle import Handle

    return Handle(
        backend.config.store.path,
        synchronous="NORMAL",
        busy_timeout_ms=5000,
        clock=wall_clock_us,
        on_ready=None,
    )


if __name__ == "__main__":
    raise SystemExit(main())
