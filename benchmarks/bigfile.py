"""Enqueue and drain with a million finished results in the queue file, against an empty file.

    python -m benchmarks.bigfile [--rows 1000000] [--n 5000] [--repeat 3]

Issue 5 asks that enqueue and drain stay at 80 % or more of their empty-file rates when the
file holds 1,000,000 finished results (user-pain scenario 30: the claim must not scan them).
Both files are measured in the same process, alternately, through Django's API and the real
worker code (an in-process 1 x 1 pool in burst mode); the medians are compared.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from .inprocess import setup_django_in_tempdir
from .prune import FILL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    folder = setup_django_in_tempdir("litetasks-bigfile-")
    import logging

    logging.disable(logging.CRITICAL)
    from django.test import override_settings

    from litetasks._django.compat import task_backends
    from litetasks._runtime.supervisor import build_pool
    from litetasks._store.clock import wall_clock_us
    from litetasks._store.connection import immediate, open_connection
    from litetasks._store.store import Store
    from tests import tasks

    paths = {"empty": folder / "empty.sqlite3", "1M finished": folder / "big.sqlite3"}
    Store(paths["1M finished"]).close()  # creates the queue file
    big = open_connection(paths["1M finished"], synchronous="NORMAL", busy_timeout_ms=5000)
    with immediate(big) as db:
        db.execute(
            FILL,
            {
                "rows": args.rows,
                "t0": wall_clock_us() - 86_400_000_000,
                "task_path": "tests.tasks.noop",
                "args": "[]",
            },
        )
    big.close()
    rates: dict[str, dict[str, list[float]]] = {k: {"enqueue": [], "drain": []} for k in paths}
    for _ in range(args.repeat):
        for name, path in paths.items():
            setting = {
                "default": {
                    "BACKEND": "litetasks.backend.SQLiteBackend",
                    "OPTIONS": {"path": str(path), "results_ttl": None},
                }
            }
            with override_settings(TASKS=setting):
                backend = task_backends["default"]
                began = time.perf_counter()
                for _ in range(args.n):
                    tasks.noop.enqueue()
                rates[name]["enqueue"].append(args.n / (time.perf_counter() - began))
                config = dataclasses.replace(backend.config.worker, threads=1, burst=True)
                pool = build_pool(backend, config)
                began = time.perf_counter()
                pool.run()
                rates[name]["drain"].append(args.n / (time.perf_counter() - began))
    print(f"{args.rows:,} finished rows vs an empty file; N={args.n}, median of {args.repeat}:")
    for metric in ("enqueue", "drain"):
        empty = statistics.median(rates["empty"][metric])
        big = statistics.median(rates["1M finished"][metric])
        print(
            f"  {metric:8} empty {empty:9,.0f}/s   1M finished {big:9,.0f}/s   {big / empty:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
