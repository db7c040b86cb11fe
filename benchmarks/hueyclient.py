"""Client-side actions for huey's ``SqliteHuey``, configured by ``benchmarks.hueyapp``."""

from __future__ import annotations

from typing import Any

from .measure import measure_latency, site_args, time_calls

__all__ = ["enqueue", "latency"]


def enqueue(n: int) -> dict[str, Any]:
    """Enqueue ``n`` ``record`` tasks, then ``n`` no-op ones, by calling the task, one call at a
    time."""
    from . import hueyapp

    hueyapp.stamp()  # untimed: the connection (and the file) open here
    calls = iter(range(n))
    total_ns, durations = time_calls(lambda: hueyapp.record(*site_args(next(calls))), n)
    noop_ns, noop_durations = time_calls(hueyapp.noop, n)
    return {
        "total_ns": total_ns,
        "call_ns": durations,
        "noop_total_ns": noop_ns,
        "noop_call_ns": noop_durations,
    }


def _started_ns(result: Any) -> int | None:
    value = result.get(preserve=True)
    return None if value is None else int(value)


def latency(probes: int, settle_s: float, timeout_s: float) -> dict[str, Any]:
    """Measure enqueue-to-start latency against the running consumer."""
    from . import hueyapp

    return measure_latency(
        hueyapp.stamp, _started_ns, probes=probes, settle_s=settle_s, timeout_s=timeout_s
    )
