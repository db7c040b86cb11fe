"""Result expiry at scale: prune a million finished results while another thread enqueues.

    python -m benchmarks.prune [--rows 1000000] [--batch 500]

Fills a fresh queue file with ``--rows`` finished results (plus a few READY and RUNNING tasks,
which must survive), then deletes them the way worker processes do (``Store.prune_step``,
``--batch`` rows per transaction) while a second connection enqueues one task at a time, and
reports the prune rate and how long those enqueues waited (user-pain scenario 29: never more
than 100 ms).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from litetasks._store.clock import wall_clock_us
from litetasks._store.connection import immediate, open_connection
from litetasks._store.enqueueing import new_job_id
from litetasks._store.records import JobState, NewJob
from litetasks._store.store import Store

FILL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
INSERT INTO jobs (job_id, task_path, queue_name, priority, args, kwargs, state, enqueued_at,
                  due_at, started_at, last_attempted_at, finished_at, worker_ids, attempts,
                  return_value)
SELECT printf('%032x', i), :task_path, 'default', 0, :args, '{}',
       CASE WHEN i % 10 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
       :t0 + i, :t0 + i, :t0 + i, :t0 + i, :t0 + i + 5, '["w"]', 1, 'null'
FROM n
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="litetasks-prune-") as folder:
        path = Path(folder) / "tasks.sqlite3"
        store = Store(path)
        started = time.perf_counter()
        t0 = wall_clock_us() - 86_400_000_000  # a day ago
        filler = open_connection(path, synchronous="NORMAL", busy_timeout_ms=5000)
        with immediate(filler) as db:
            db.execute(
                FILL,
                {"rows": args.rows, "t0": t0, "task_path": "app.tasks.report", "args": "[1, 2]"},
            )
        filler.close()
        live = [NewJob(job_id=new_job_id(), task_path="app.tasks.live") for _ in range(10)]
        store.enqueue(live)
        store.claim("bench-worker", limit=3)
        print(f"filled {args.rows:,} finished rows in {time.perf_counter() - started:.1f} s")

        waits: list[float] = []
        done = threading.Event()

        def enqueue_meanwhile() -> None:
            other = Store(path)
            while not done.is_set():
                began = time.perf_counter()
                other.enqueue([NewJob(job_id=new_job_id(), task_path="app.tasks.new")])
                waits.append(time.perf_counter() - began)
                time.sleep(0.001)
            other.close()

        enqueuer = threading.Thread(target=enqueue_meanwhile)
        enqueuer.start()
        began = time.perf_counter()
        deleted, after, windows = 0, 0, 0
        cutoff = wall_clock_us() - 3_600_000_000  # older than an hour
        while after is not None:
            count, after = store.prune_step(
                finished_before_us=cutoff, after=after, batch=args.batch
            )
            deleted += count
            windows += 1
        seconds = time.perf_counter() - began
        done.set()
        enqueuer.join()
        counts = store.counts()
        survivors = {state: n for (_, state), n in counts.items()}
        assert deleted == args.rows, (deleted, args.rows)
        assert survivors.get(JobState.READY, 0) >= 7 and survivors.get(JobState.RUNNING) == 3
        waits_ms = sorted(w * 1000 for w in waits)
        print(
            f"pruned {deleted:,} rows in {seconds:.1f} s ({deleted / seconds:,.0f} rows/s, "
            f"{windows:,} transactions of {args.batch})"
        )
        print(
            f"{len(waits_ms):,} enqueues meanwhile: p50 {statistics.median(waits_ms):.2f} ms, "
            f"p99 {waits_ms[int(len(waits_ms) * 0.99)]:.2f} ms, max {waits_ms[-1]:.2f} ms"
        )
        print(f"READY and RUNNING kept: {survivors}; integrity: {store.integrity_check()}")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
