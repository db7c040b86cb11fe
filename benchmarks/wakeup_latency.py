"""Measure how fast a doorbell ring wakes a waiting worker, and what an idle waiter costs.

    python benchmarks/wakeup_latency.py [--n 200] [--idle-s 10] [--json PATH]

Cross-process latency: a child process waits with a ``Waiter`` and reports the moment it woke
(``time.monotonic_ns``; CLOCK_MONOTONIC is shared by every process on the box); the parent rings
``--n`` times with random 5-25 ms gaps and records the moment just before each ``ring()``. The
in-process latency is the same measurement with the waiting thread in the ringing process. Idle
CPU: a child sits in ``Waiter.wait()`` for ``--idle-s`` seconds and reports its CPU time
(``getrusage``, all threads, including the observer's) and context switches.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from litetasks._runtime.wakeup import Waiter
from litetasks._store.doorbell import Doorbell

REPO = Path(__file__).resolve().parent.parent
MIN_GAP_S = 0.005
MAX_GAP_S = 0.025
SETTLE_S = 0.25  # after the last ring, how long late wake-ups may still arrive


def summarize_ms(latencies_ns: list[int]) -> dict[str, float]:
    """Return p50/p95/p99/max/mean of ``latencies_ns``, in milliseconds."""
    ms = sorted(value / 1e6 for value in latencies_ns)
    if len(ms) < 2:
        return {"p50": ms[0], "p95": ms[0], "p99": ms[0], "max": ms[0], "mean": ms[0]}
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 3),
        "p95": round(cuts[94], 3),
        "p99": round(cuts[98], 3),
        "max": round(ms[-1], 3),
        "mean": round(statistics.fmean(ms), 3),
    }


def match_wakes(rings_ns: list[int], wakes_ns: list[int]) -> tuple[list[int], int, int]:
    """Pair each ring with the first wake-up at or after it.

    That is when a worker would claim the ring's work. Returns the latencies, how many rings had
    no wake-up at all (missed), and how many shared their wake-up with the next ring (late: it
    came after the next ring; the kernel coalesces a ring whose event is still unread).
    """
    latencies: list[int] = []
    missed = late = 0
    wakes = sorted(wakes_ns)
    index = 0
    for ring_index, rung_at in enumerate(rings_ns):
        while index < len(wakes) and wakes[index] < rung_at:
            index += 1
        if index == len(wakes):
            missed += 1
            continue
        latencies.append(wakes[index] - rung_at)
        next_ring = rings_ns[ring_index + 1] if ring_index + 1 < len(rings_ns) else None
        if next_ring is not None and wakes[index] >= next_ring:
            late += 1
    return latencies, missed, late


def ring_with_gaps(bell: Doorbell, n: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """Ring ``n`` times with random gaps; return the ring times and each ring() call's cost."""
    rings_ns: list[int] = []
    costs_ns: list[int] = []
    for _ in range(n):
        time.sleep(rng.uniform(MIN_GAP_S, MAX_GAP_S))
        rung_at = time.monotonic_ns()
        bell.ring()
        costs_ns.append(time.monotonic_ns() - rung_at)
        rings_ns.append(rung_at)
    return rings_ns, costs_ns


def measure_ring_cost(n: int) -> dict[str, float]:
    """Time ``n`` back-to-back rings of a doorbell nobody watches: the hot-path cost of ring()."""
    with tempfile.TemporaryDirectory(prefix="litetasks-ring-") as folder:
        bell = Doorbell(Path(folder) / "tasks.sqlite3")
        bell.ring()
        started = time.perf_counter_ns()
        for _ in range(n):
            bell.ring()
        elapsed_ns = time.perf_counter_ns() - started
    return {"rings": n, "mean_us": round(elapsed_ns / n / 1000, 3)}


def child_env() -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath}


def measure_cross_process(queue_path: Path, n: int, rng: random.Random) -> dict[str, object]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--child-wait", str(queue_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert child.stdin is not None and child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError("The waiting child did not start.")
    wakes_ns: list[int] = []
    stdout = child.stdout
    reader = threading.Thread(target=lambda: wakes_ns.extend(int(line) for line in stdout))
    reader.start()
    rings_ns, costs_ns = ring_with_gaps(Doorbell(queue_path), n, rng)
    time.sleep(SETTLE_S)
    child.stdin.close()  # the child's signal to stop
    child.wait(10)
    reader.join(10)
    latencies, missed, late = match_wakes(rings_ns, wakes_ns)
    return {
        "rings": n,
        "wakes": len(wakes_ns),
        "missed": missed,
        "late": late,
        "latency_ms": summarize_ms(latencies),
        "ring_cost_us": {k: round(v * 1000, 2) for k, v in summarize_ms(costs_ns).items()},
    }


def measure_in_process(queue_path: Path, n: int, rng: random.Random) -> dict[str, object]:
    wakes_ns: list[int] = []
    stopping = threading.Event()
    with Waiter(queue_path) as waiter:
        thread = threading.Thread(target=wait_and_report, args=(waiter, stopping, wakes_ns.append))
        thread.start()
        rings_ns, _ = ring_with_gaps(Doorbell(queue_path), n, rng)
        time.sleep(SETTLE_S)
        stopping.set()
        waiter.wake()
        thread.join(10)
    latencies, missed, late = match_wakes(rings_ns, wakes_ns)
    return {"rings": n, "missed": missed, "late": late, "latency_ms": summarize_ms(latencies)}


def measure_idle(queue_path: Path, idle_s: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child-idle", str(queue_path), "--idle-s", str(idle_s)],
        capture_output=True,
        text=True,
        env=child_env(),
        check=True,
        timeout=idle_s + 60,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def wait_and_report(
    waiter: Waiter, stopping: threading.Event, report: Callable[[int], None]
) -> None:
    """Wait for rings until ``stopping``; report each wake-up's monotonic time in ns.

    Clearing right after waking stands for a worker's clear-then-claim: a ring that lands while
    the report is written still wakes the next wait().
    """
    waiter.clear()
    while not stopping.is_set():
        if waiter.wait(5.0) and not stopping.is_set():
            woke_at = time.monotonic_ns()
            waiter.clear()
            report(woke_at)


def child_wait(queue_path: Path) -> None:
    stopping = threading.Event()
    with Waiter(queue_path) as waiter:
        if not waiter.is_watching:
            raise SystemExit("The doorbell folder cannot be watched.")

        def stop_at_eof() -> None:
            sys.stdin.read()
            stopping.set()
            waiter.wake()

        threading.Thread(target=stop_at_eof, daemon=True).start()
        print("ready", flush=True)
        wait_and_report(waiter, stopping, lambda at: print(at, flush=True))


def child_idle(queue_path: Path, idle_s: float) -> None:
    with Waiter(queue_path) as waiter:
        threads = threading.active_count()
        waiter.clear()
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        rung = waiter.wait(idle_s)
        wall_s = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = {
        "wall_s": round(wall_s, 3),
        "cpu_s": round(cpu_s, 6),
        "cpu_percent_of_one_core": round(100 * cpu_s / wall_s, 4),
        "voluntary_context_switches": after.ru_nvcsw - before.ru_nvcsw,
        "threads": threads,
        "rung": rung,
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="rings per measurement (default 200)")
    parser.add_argument("--idle-s", type=float, default=10.0, help="idle CPU window (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the gaps between rings")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child-wait", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-idle", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_wait is not None:
        child_wait(args.child_wait)
        return
    if args.child_idle is not None:
        child_idle(args.child_idle, args.idle_s)
        return

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="litetasks-wakeup-") as folder:
        queue_path = Path(folder) / "tasks.sqlite3"
        queue_path.touch()
        Doorbell(queue_path).ring()  # create the doorbell, so no ring is a creation
        results: dict[str, object] = {
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "gaps_ms": [MIN_GAP_S * 1000, MAX_GAP_S * 1000],
            "cross_process": measure_cross_process(queue_path, args.n, rng),
            "in_process": measure_in_process(queue_path, args.n, rng),
            "idle": measure_idle(queue_path, args.idle_s),
            "ring_cost_hot": measure_ring_cost(10_000),
        }
    report(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"saved {args.json}")


def report(results: dict[str, object]) -> None:
    for name in ("cross_process", "in_process"):
        part = results[name]
        assert isinstance(part, dict)
        lat = part["latency_ms"]
        print(
            f"{name:14} ring->wake ms  p50 {lat['p50']:.3f}  p95 {lat['p95']:.3f}  "
            f"p99 {lat['p99']:.3f}  max {lat['max']:.3f}  (rings {part['rings']}, "
            f"missed {part['missed']}, late {part['late']})"
        )
    cross = results["cross_process"]
    assert isinstance(cross, dict)
    cost = cross["ring_cost_us"]
    hot = results["ring_cost_hot"]
    assert isinstance(hot, dict)
    print(
        f"{'ring() cost':14} us            p50 {cost['p50']:.1f}  p99 {cost['p99']:.1f} "
        f"after a 5-25 ms gap; {hot['mean_us']:.2f} back to back"
    )
    idle = results["idle"]
    assert isinstance(idle, dict)
    print(
        f"{'idle waiter':14} {idle['cpu_percent_of_one_core']:.4f}% of one core over "
        f"{idle['wall_s']:.1f} s (cpu {idle['cpu_s'] * 1000:.2f} ms, "
        f"{idle['voluntary_context_switches']} voluntary context switches, "
        f"{idle['threads']} threads)"
    )


if __name__ == "__main__":
    main()
