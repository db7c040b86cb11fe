"""Client-side actions for huey's ``SqliteHuey``, configured by ``benchmarks.hueyapp``."""

from __future__ import annotations

from typing import Any

from .measure import measure_latency, time_calls

__all__ = ["enqueue", "latency"]


def enqueue(n: int) -> dict[str, Any]:
    """Enqueue ``n`` no-op tasks by calling the task, one call at a time."""
    from . import hueyapp

    total_ns, durations = time_calls(hueyapp.noop, n)
    return {"total_ns": total_ns, "call_ns": durations}


def _started_ns(result: Any) -> int | None:
    value = result.get(preserve=True)
    return None if value is None else int(value)


def latency(probes: int, settle_s: float, timeout_s: float) -> dict[str, Any]:
    """Measure enqueue-to-start latency against the running consumer."""
    from . import hueyapp

    return measure_latency(
        hueyapp.stamp, _started_ns, probes=probes, settle_s=settle_s, timeout_s=timeout_s
    )
