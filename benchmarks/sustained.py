"""Sustained mixed load: producers at fixed offered rates while the default pool runs.

``python -m benchmarks.sustained [--rates 1000,2000,5000,10000] [--rise 1.5] [--seconds 4]
[--producers 2] [--only litetasks,huey-normal] [--json out.json]``

Per system, one worker runs the whole time: litetasks' default pool (``litetasks run``: one
process per core, 4 threads each), huey NORMAL's consumer with as many worker threads. For each
offered rate, ``--producers`` processes enqueue ``arrive(sent_ns, id, str, dict)`` tasks on a
fixed schedule for ``--seconds`` (open loop: a late call is made at once, never skipped). Each
task appends when it started to a file. Per rate: the enqueue call p99, the enqueue-to-start
p50/p99, and whether the backlog stayed bounded (every task started within 1 s of the end of
the producers' last call and enqueue-to-start p99 under 1 s). After the listed rates the rate
rises by ``--rise`` until the backlog grows; the maximum sustainable rate is the highest rate
actually enqueued (producers on a busy machine may fall behind the offered one) that stayed
bounded. When the producers cannot reach the offered rate any more, that is a lower bound;
so it is with ``--rise 1`` (or less), which offers the listed rates only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import machine
from .measure import percentile, site_args
from .producers import READY, release, start_producers
from .systems import PYTHON, SETTINGS_MODULE, SYSTEMS, System

__all__ = ["main"]

DEFAULT_RATES = (1000, 2000, 5000, 10000)
_MAX_LAG_NS = 1_000_000_000  # bounded: every task started within 1 s of the window's end
_WORKERS = os.cpu_count() or 1  # litetasks' default pool: a process per core ...
_THREADS = 4  # ... of 4 threads each


def _enqueuer(kind: str) -> Any:
    if kind == "huey":
        from . import hueyapp

        return lambda sent, i: hueyapp.arrive(sent, *site_args(i))
    import django

    django.setup()
    from .benchapp import tasks

    return lambda sent, i: tasks.arrive.enqueue(sent, *site_args(i))


def child(kind: str, rate: float, seconds: float, out: Path) -> None:
    """One producer: ``rate`` calls a second for ``seconds``, on schedule; start at a line."""
    call = _enqueuer(kind)
    print(READY, flush=True)
    sys.stdin.readline()
    count = int(rate * seconds)
    calls: list[int] = []
    begin = time.monotonic_ns()
    stop = begin + int(seconds * 1e9)
    for i in range(count):
        if time.monotonic_ns() > stop:  # fallen behind: what was sent in the window counts
            break
        due = begin + int(i * 1e9 / rate)
        wait = due - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        start = time.monotonic_ns()
        call(time.time_ns(), i)
        calls.append(time.monotonic_ns() - start)
    out.write_text(json.dumps({"call_ns": calls, "end_ns": time.time_ns()}))


def _worker(system: System, workdir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    if system.kind == "huey":
        argv: tuple[str, ...] = (
            PYTHON, "-m", "huey.bin.huey_consumer", "benchmarks.hueyapp.huey",
            "-w", str(_WORKERS * _THREADS), "-k", "thread",
        )  # fmt: skip
    else:
        argv = (PYTHON, "-m", "litetasks", "run", "--settings", SETTINGS_MODULE)
    with (workdir / "worker.log").open("ab") as log:
        return subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=log, stderr=log, start_new_session=True
        )


def _arrivals(path: Path, since_ns: int) -> list[tuple[int, int]]:
    """The (sent, started) times of the tasks sent after ``since_ns`` that started."""
    if not path.exists():
        return []
    pairs = [line.split() for line in path.read_text().splitlines()]
    return [(int(sent), int(started)) for sent, started in pairs if int(sent) >= since_ns]


def _offer(
    system: System, workdir: Path, env: dict[str, str], rate: float, seconds: float, producers: int
) -> dict[str, Any]:
    """Offer ``rate`` tasks/s for ``seconds`` from ``producers`` processes; return the figures."""
    arrivals = Path(env["BENCH_ARRIVALS"])
    child = ["benchmarks.sustained", "--child", system.kind, "--rate", str(rate / producers)]
    procs = start_producers(producers, [*child, "--seconds", str(seconds)], workdir, env)
    begin_ns = time.time_ns()
    end_ns = begin_ns + int(seconds * 1e9)
    release(procs)
    for proc in procs:
        proc.wait(seconds * 10 + 60)
    outs = [json.loads((workdir / f"p{i}.json").read_text()) for i in range(producers)]
    total = sum(len(out["call_ns"]) for out in outs)
    deadline = time.monotonic() + 10
    while len(_arrivals(arrivals, begin_ns)) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = _arrivals(arrivals, begin_ns)
    calls_ms = [ns / 1e6 for out in outs for ns in out["call_ns"]]
    end_ns = max(end_ns, *(out["end_ns"] for out in outs))  # the producers may fall behind
    lags_ms = [(started - sent) / 1e6 for sent, started in seen]
    last_start = max((started for _, started in seen), default=0)
    p99 = percentile(lags_ms, 99)
    return {
        "offered_per_s": rate,
        "achieved_per_s": total / ((end_ns - begin_ns) / 1e9),
        "started": len(seen),
        "total": total,
        "enqueue_p99_ms": percentile(calls_ms, 99),
        "start_p50_ms": percentile(lags_ms, 50),
        "start_p99_ms": p99,
        "bounded": len(seen) == total and last_start - end_ns < _MAX_LAG_NS and p99 < 1000,
    }


def next_rate(left: list[float], rate: float, rise: float) -> float | None:
    """The rate after ``rate``: the next listed one, else ``rate`` times ``rise``; None when
    the listed rates are done and ``rise`` is 1 or less (no rising)."""
    if left:
        return left[0]
    return rate * rise if rise > 1 else None


def measure(
    system: System, rates: list[float], rise: float, seconds: float, producers: int
) -> list[dict[str, Any]]:
    """Run ``system``'s worker, offer each rate, then rising ones until the backlog grows."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-sustained-{system.key}-"))
    env = {**os.environ, **system.prepare(workdir)}
    env["BENCH_ARRIVALS"] = str(workdir / "arrivals.txt")  # where the tasks note their start
    system.setup(workdir, env, workdir / "setup.log")
    worker = _worker(system, workdir, env)
    results: list[dict[str, Any]] = []
    try:
        time.sleep(3.0)  # the pool is up and has imported the tasks
        rate, queue = rates[0], list(rates)
        while True:
            print(f"{system.label}: {rate:,.0f}/s", file=sys.stderr, flush=True)
            results.append(_offer(system, workdir, env, rate, seconds, producers))
            row = results[-1]
            if not row["bounded"] or worker.poll() is not None:
                break
            if row["achieved_per_s"] < 0.8 * rate:  # the producers cannot send more
                row["producers_saturated"] = True
                break
            queue = queue[1:]
            following = next_rate(queue, rate, rise)
            if following is None:
                row["rates_ended"] = True
                break
            rate = following
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def print_table(results: dict[str, Any]) -> None:
    """One row per system and offered rate; the maximum sustainable rate of each."""
    print(
        "| system | offered/s | enqueued/s | started | enqueue p99 ms | start p50 ms "
        "| start p99 ms | bounded |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for label, rows in results["systems"].items():
        for row in rows:
            print(
                f"| {label} | {row['offered_per_s']:,.0f} | {row['achieved_per_s']:,.0f} "
                f"| {row['started']:,}/{row['total']:,} "
                f"| {row['enqueue_p99_ms']:.2f} | {row['start_p50_ms']:.1f} "
                f"| {row['start_p99_ms']:.1f} | {'yes' if row['bounded'] else 'NO'} |"
            )
    for label, best in results["max_sustainable"].items():
        rows = results["systems"][label]
        more = ""
        if rows[-1].get("producers_saturated"):
            more = " (at least: the producers could send no more)"
        elif rows[-1].get("rates_ended"):
            more = " (at least: only the listed rates were offered, --rise 1 or less)"
        print(f"max sustainable, {label}: {best:,.0f} tasks/s{more}")


def main(argv: list[str] | None = None) -> None:
    """Parse the command line; run the load (or, with --child, be one producer)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sustained")
    parser.add_argument("--child", choices=("django", "huey"), help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)))
    parser.add_argument("--rise", type=float, default=1.5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--only", default="litetasks,huey-normal")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.rate, args.seconds, Path(args.out))
        return
    by_key = {system.key: system for system in SYSTEMS}
    rates = [float(rate) for rate in args.rates.split(",")]
    results: dict[str, Any] = {
        "machine": machine.describe(),
        "load_average_before": machine.load_average(),
        "config": vars(args) | {"json": None},
        "systems": {},
        "max_sustainable": {},
    }
    for key in args.only.split(","):
        system = by_key[key]
        rows = measure(system, rates, args.rise, args.seconds, args.producers)
        results["systems"][system.label] = rows
        bounded = [row["achieved_per_s"] for row in rows if row["bounded"]]
        results["max_sustainable"][system.label] = max(bounded, default=0.0)
    results["load_average_after"] = machine.load_average()
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
