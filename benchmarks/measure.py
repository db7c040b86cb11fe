"""Timing loops and statistics shared by the clients of every system. Stdlib only."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = [
    "measure_latency",
    "note_arrival",
    "percentile",
    "site_args",
    "time_calls",
    "wait_for_all",
]

H = TypeVar("H")

# Gap between two latency probes: random, so probes do not fall into step with a poll interval.
GAP_S = (0.005, 0.025)


_arrivals: list[int] = []  # the descriptor of $BENCH_ARRIVALS, opened on first use


def note_arrival(sent_ns: int) -> None:
    """Append ``<sent_ns> <now_ns>`` to the file ``$BENCH_ARRIVALS`` (if set): one short
    ``O_APPEND`` write, whole even from many processes."""
    path = os.environ.get("BENCH_ARRIVALS")
    if not path:
        return
    if not _arrivals:
        _arrivals.append(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
    os.write(_arrivals[0], f"{sent_ns} {time.time_ns()}\n".encode())


def site_args(i: int) -> tuple[int, str, dict[str, object]]:
    """The arguments of the headline task ``record``: what a site passes (an id, a short
    string, a small dict), the same for every system."""
    return (i, "signup", {"plan": "pro", "source": "web", "ref": i % 97})


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) of ``values``, nearest-rank method."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def time_calls(call: Callable[[], object], n: int) -> tuple[int, list[int]]:
    """Call ``call`` ``n`` times; return the total and the per-call durations, in ns."""
    durations = []
    clock = time.perf_counter_ns
    begin = clock()
    for _ in range(n):
        start = clock()
        call()
        durations.append(clock() - start)
    return clock() - begin, durations


def wait_for_all(
    handles: Sequence[H], started_ns: Callable[[H], int | None], timeout_s: float
) -> list[int | None]:
    """Wait for each handle's task to report its start time (ns); None for those that never did.

    Handles are awaited in order, one poll at a time: queues run tasks roughly in order, and
    polling every pending result at once would load the very database the worker writes to.
    """
    found: list[int | None] = []
    deadline = time.monotonic() + timeout_s
    for handle in handles:
        value = started_ns(handle)
        while value is None and time.monotonic() < deadline:
            time.sleep(0.005)
            value = started_ns(handle)
        found.append(value)
    return found


def measure_latency(
    send: Callable[[], H],
    started_ns: Callable[[H], int | None],
    *,
    probes: int,
    settle_s: float,
    timeout_s: float,
    seed: int = 5,
) -> dict[str, object]:
    """Measure enqueue-to-start latency against a worker that is already running.

    One warm-up task proves the worker is serving; after ``settle_s`` of idleness, ``probes``
    tasks are sent with random 5-25 ms gaps. Each latency runs from just before the
    ``enqueue`` call to the first line of the task body (which returns ``time.time_ns()``).
    """
    warm = send()
    if wait_for_all([warm], started_ns, timeout_s)[0] is None:
        raise TimeoutError(f"The worker did not run a warm-up task within {timeout_s} s.")
    time.sleep(settle_s)
    rng = random.Random(seed)
    sent_ns: list[int] = []
    call_ns: list[int] = []
    handles: list[H] = []
    for _ in range(probes):
        before = time.time_ns()
        handles.append(send())
        call_ns.append(time.time_ns() - before)
        sent_ns.append(before)
        time.sleep(rng.uniform(*GAP_S))
    starts = wait_for_all(handles, started_ns, timeout_s)
    latencies = [(s - b) / 1e6 for s, b in zip(starts, sent_ns, strict=True) if s is not None]
    return {
        "latency_ms": latencies,
        "enqueue_call_ms": [c / 1e6 for c in call_ns],
        "lost": sum(1 for s in starts if s is None),
    }
