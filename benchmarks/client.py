"""Run one measurement inside a system's own process and write its raw figures as JSON.

``python -m benchmarks.client ACTION --out FILE [...]``; the harness (``benchmarks.run``) starts
it with the system's environment (settings module or huey variables) and reads FILE back.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["main"]

ACTIONS = ("enqueue", "bulk", "bulk-many", "drain-window", "latency")


def bulk_litetasks(n: int, workdir: Path) -> dict[str, Any]:
    """Enqueue ``n`` no-op jobs in one store-level call, into a file of their own."""
    from litetasks._store.enqueueing import new_job_ids
    from litetasks._store.records import NewJob
    from litetasks._store.store import Store

    with Store(workdir / "bulk.sqlite3") as store:
        begin = time.perf_counter_ns()
        jobs = [
            NewJob(job_id=job_id, task_path="benchmarks.benchapp.tasks.noop")
            for job_id in new_job_ids(n)
        ]
        built = time.perf_counter_ns()
        store.enqueue(jobs)
        total_ns = time.perf_counter_ns() - begin
    return {"total_ns": total_ns, "build_ns": built - begin}


def bulk_enqueue_many(n: int, workdir: Path) -> dict[str, Any]:
    """``litetasks.enqueue_many()`` of ``n`` no-op calls (validation, results and signals for
    each), through a backend like the configured one but on a file of its own."""
    from django.conf import settings

    from benchmarks.benchapp.tasks import noop
    from litetasks._django.backend import SQLiteBackend

    alias = noop.backend
    params = {**settings.TASKS[alias]}
    params["OPTIONS"] = {**params.get("OPTIONS", {}), "path": str(workdir / "bulk-many.sqlite3")}
    backend = SQLiteBackend(alias, params)
    begin = time.perf_counter_ns()
    backend.enqueue_many(noop, [()] * n)  # what litetasks.enqueue_many() calls
    return {"total_ns": time.perf_counter_ns() - begin}


def _run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    if args.kind == "huey":
        from . import hueyclient

        huey_actions: dict[str, Callable[[], dict[str, Any]]] = {
            "enqueue": lambda: hueyclient.enqueue(args.n),
            "latency": lambda: hueyclient.latency(args.probes, args.settle_s, args.timeout_s),
        }
        actions = huey_actions
    else:
        from . import djangoclient

        actions = {
            "enqueue": lambda: djangoclient.enqueue(args.n, workdir),
            "drain-window": lambda: djangoclient.drain_window(workdir),
            "latency": lambda: djangoclient.latency(args.probes, args.settle_s, args.timeout_s),
            "bulk": lambda: bulk_litetasks(args.n, workdir),
            "bulk-many": lambda: bulk_enqueue_many(args.n, workdir),
        }
    if args.action not in actions:
        raise SystemExit(f"Action {args.action!r} is not available for kind {args.kind!r}.")
    return actions[args.action]()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run the action, write its JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client")
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("--kind", choices=("django", "huey"), required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--settle-s", type=float, default=1.0)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    Path(args.out).write_text(json.dumps(_run(args)))


if __name__ == "__main__":
    main()
