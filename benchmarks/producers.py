"""Concurrent producers: many web processes (or threads) enqueueing at full speed at once.

``python -m benchmarks.producers [--n 2000] [--repeat 3] [--shapes 1,2,4,8,8t]
[--only litetasks,huey-normal,dtdb-wal] [--json out.json]``

Each shape starts that many producer processes (``8t``: one process with 8 threads) against a
fresh queue of each system; every producer sets up, enqueues one warm-up task (its connection
is open), says it is ready and waits; all start together and enqueue ``--n`` ``record`` tasks
(the headline task: an int id, a short string, a small dict) as fast as they can, timing each
call. No worker runs. Per shape and system: the aggregate rate (all calls over first start to
last end), p50/p99/max per call over all calls, and each producer's own rate against the mean
(fair: every one within 2x of it). Systems alternate within a round and rounds repeat, so a
change in the machine's load is shared out; figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import machine
from .measure import percentile, site_args
from .systems import PYTHON, SYSTEMS, System

__all__ = ["READY", "main", "measure", "release", "start_producers", "summarise"]

DEFAULT_SHAPES = ("1", "2", "4", "8", "8t")
DEFAULT_SYSTEMS = "litetasks,huey-normal,dtdb-wal"
READY = "ready"
_TIMEOUT_S = 600.0


def _enqueuer(kind: str) -> Callable[[int], object]:
    """The call a producer makes: ``record.enqueue(*site_args(i))`` in the system's API."""
    if kind == "huey":
        from . import hueyapp

        return lambda i: hueyapp.record(*site_args(i))
    import django

    django.setup()
    from .benchapp import tasks

    return lambda i: tasks.record.enqueue(*site_args(i))


def _produce(
    call: Callable[[int], object], n: int, out: dict[str, Any], go: threading.Event
) -> None:
    call(-1)  # warm-up: this thread's connection is open before the clock starts
    go.wait()
    clock = time.monotonic_ns
    calls: list[int] = []
    out["start_ns"] = clock()
    for i in range(n):
        start = clock()
        call(i)
        calls.append(clock() - start)
    out["end_ns"] = clock()
    out["call_ns"] = calls


def child(kind: str, n: int, threads: int, out_path: Path) -> None:
    """One producer process: ``threads`` threads, each a producer; wait for a line on stdin."""
    call = _enqueuer(kind)
    go = threading.Event()
    results: list[dict[str, Any]] = [{} for _ in range(threads)]
    workers = [threading.Thread(target=_produce, args=(call, n, result, go)) for result in results]
    for worker in workers:
        worker.start()
    time.sleep(0.2)  # the warm-ups are done (each is one enqueue)
    print(READY, flush=True)
    sys.stdin.readline()
    go.set()
    for worker in workers:
        worker.join()
    out_path.write_text(json.dumps(results))


def _shape(shape: str) -> tuple[int, int]:
    """``"4"``: 4 processes of 1 thread; ``"8t"``: 1 process of 8 threads."""
    if shape.endswith("t"):
        return 1, int(shape[:-1])
    return int(shape), 1


def measure(system: System, shape: str, n: int) -> list[dict[str, Any]]:
    """Run one shape against a fresh queue of ``system``; return every producer's figures."""
    processes, threads = _shape(shape)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-producers-{system.key}-"))
    try:
        env = {**os.environ, **system.prepare(workdir)}
        system.setup(workdir, env, workdir / "setup.log")
        child = ["benchmarks.producers", "--child", system.kind, "--n", str(n)]
        procs = start_producers(processes, [*child, "--threads", str(threads)], workdir, env)
        release(procs)
        for proc in procs:
            if proc.wait(_TIMEOUT_S) != 0:
                raise RuntimeError(f"a producer exited {proc.returncode}: {_log(workdir)}")
        return [
            result
            for index in range(processes)
            for result in json.loads((workdir / f"p{index}.json").read_text())
        ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def start_producers(
    count: int, child: list[str], workdir: Path, env: dict[str, str]
) -> list[subprocess.Popen[str]]:
    """Start ``count`` producers, ``python -m *child --out <workdir>/p<index>.json``, in
    ``workdir``, each one's stderr in ``p<index>.log``; return them once each has said it is
    set up and warm (``READY``) and waits on stdin to begin."""
    procs = []
    for index in range(count):
        argv = [PYTHON, "-m", *child, "--out", str(workdir / f"p{index}.json")]
        with (workdir / f"p{index}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            )
    for proc in procs:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != READY:
            raise RuntimeError(f"a producer did not start: {_log(workdir)}")
    return procs


def release(procs: list[subprocess.Popen[str]]) -> None:
    """Let every started producer begin, at once."""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def _log(workdir: Path) -> str:
    return " | ".join(
        path.read_text(errors="replace").strip()[-500:] for path in sorted(workdir.glob("*.log"))
    )


def summarise(producers: list[dict[str, Any]]) -> dict[str, float]:
    """Aggregate rate, per-call p50/p99/max (ms) and fairness of one measurement."""
    calls_ms = [ns / 1e6 for p in producers for ns in p["call_ns"]]
    span_ns = max(p["end_ns"] for p in producers) - min(p["start_ns"] for p in producers)
    rates = [len(p["call_ns"]) / ((p["end_ns"] - p["start_ns"]) / 1e9) for p in producers]
    mean = statistics.mean(rates)
    return {
        "aggregate_per_s": len(calls_ms) / (span_ns / 1e9),
        "p50_ms": percentile(calls_ms, 50),
        "p99_ms": percentile(calls_ms, 99),
        "max_ms": max(calls_ms),
        "slowest_vs_mean": min(rates) / mean,
        "fastest_vs_mean": max(rates) / mean,
        "fair": float(all(mean / 2 <= rate <= mean * 2 for rate in rates)),
    }


def run(
    systems: list[System], shapes: list[str], n: int, repeat: int, echo: bool = True
) -> dict[str, Any]:
    """Measure every shape for every system, alternating systems, ``repeat`` rounds; medians."""
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {
        shape: {s.key: [] for s in systems} for shape in shapes
    }
    load_before = machine.load_average()
    for index in range(repeat):
        for shape in shapes:
            for system in systems:
                if echo:
                    print(f"round {index + 1}/{repeat}: {shape} {system.label}", file=sys.stderr)
                rounds[shape][system.key].append(summarise(measure(system, shape, n)))
    medians = {
        shape: {
            key: {m: statistics.median(r[m] for r in runs) for m in runs[0]}
            for key, runs in by_system.items()
        }
        for shape, by_system in rounds.items()
    }
    return {
        "machine": machine.describe(),
        "load_average_before": load_before,
        "load_average_after": machine.load_average(),
        "config": {"n": n, "repeat": repeat, "shapes": shapes},
        "labels": {s.key: s.label for s in systems},
        "medians": medians,
        "rounds": rounds,
    }


def print_table(results: dict[str, Any]) -> None:
    """One row per shape and system; the rate also as a ratio to litetasks in that shape, and
    litetasks' as a ratio to its own single producer."""
    medians, labels = results["medians"], results["labels"]
    single = medians.get("1", {}).get("litetasks", {}).get("aggregate_per_s")
    print(
        f"n={results['config']['n']} calls per producer, medians of {results['config']['repeat']}"
    )
    print(
        "| producers | system | tasks/s | vs litetasks | p50 ms | p99 ms | max ms "
        "| slowest/fastest vs mean |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for shape, by_system in medians.items():
        base = by_system.get("litetasks", {}).get("aggregate_per_s")
        for key, m in by_system.items():
            rate = m["aggregate_per_s"]
            versus = f"{rate / base:.2f}x" if base else "-"
            if key == "litetasks" and single:
                versus = f"{rate / single:.2f}x of 1 producer"
            print(
                f"| {_label(shape)} | {labels[key]} | {rate:,.0f} | {versus} | {m['p50_ms']:.3f} | "
                f"{m['p99_ms']:.2f} | {m['max_ms']:.1f} | "
                f"{m['slowest_vs_mean']:.2f} / {m['fastest_vs_mean']:.2f} |"
            )


def _label(shape: str) -> str:
    processes, threads = _shape(shape)
    if threads > 1:
        return f"1 process x {threads} threads"
    return f"{processes} process{'es' * (processes > 1)}"


def _systems(only: str) -> list[System]:
    """The systems named in ``--only``: keys (``litetasks`` is the default configuration)."""
    wanted = [key.strip() for key in only.split(",") if key.strip()]
    by_key = {system.key: system for system in SYSTEMS}
    unknown = [key for key in wanted if key not in by_key]
    if unknown:
        raise SystemExit(
            f"Unknown system(s): {', '.join(unknown)}; choose from {', '.join(by_key)}."
        )
    return [by_key[key] for key in wanted]


def main(argv: list[str] | None = None) -> None:
    """Parse the command line; run the producers (or, with --child, be one)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.producers")
    parser.add_argument("--child", choices=("django", "huey"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=2000, help="calls per producer")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shapes", default=",".join(DEFAULT_SHAPES))
    parser.add_argument("--only", default=DEFAULT_SYSTEMS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.n, args.threads, Path(args.out))
        return
    results = run(_systems(args.only), args.shapes.split(","), args.n, args.repeat)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
