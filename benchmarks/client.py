"""Run one measurement inside a system's own process and write its raw figures as JSON.

``python -m benchmarks.client ACTION --out FILE [...]``; the harness (``benchmarks.run``) starts
it with the system's environment (settings module or huey variables) and reads FILE back.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

ACTIONS = ("enqueue", "bulk", "drain-window", "latency")


def bulk_litetasks(n: int, workdir: Path) -> dict[str, Any]:
    """Enqueue ``n`` no-op jobs in one store-level call, into a file of their own."""
    from litetasks.backend import new_job_id
    from litetasks.records import NewJob
    from litetasks.store import Store

    with Store(workdir / "bulk.sqlite3") as store:
        begin = time.perf_counter_ns()
        jobs = [
            NewJob(job_id=new_job_id(), task_path="benchmarks.benchapp.tasks.noop")
            for _ in range(n)
        ]
        built = time.perf_counter_ns()
        store.enqueue(jobs)
        total_ns = time.perf_counter_ns() - begin
    return {"total_ns": total_ns, "build_ns": built - begin}


def _run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    if args.kind == "huey":
        from . import hueyclient

        if args.action == "enqueue":
            return hueyclient.enqueue(args.n)
        if args.action == "latency":
            return hueyclient.latency(args.probes, args.settle_s, args.timeout_s)
    else:
        from . import djangoclient

        if args.action == "enqueue":
            return djangoclient.enqueue(args.n, workdir)
        if args.action == "drain-window":
            return djangoclient.drain_window(workdir)
        if args.action == "latency":
            return djangoclient.latency(args.probes, args.settle_s, args.timeout_s)
        if args.action == "bulk":
            return bulk_litetasks(args.n, workdir)
    raise SystemExit(f"Action {args.action!r} is not available for kind {args.kind!r}.")


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
