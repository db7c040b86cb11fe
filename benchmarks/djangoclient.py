"""Client-side actions for systems behind Django's task API (litetasks, django-tasks-db).

Runs in a subprocess whose ``DJANGO_SETTINGS_MODULE`` names the system's settings.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import django

from .measure import measure_latency, site_args, time_calls

__all__ = ["drain_window", "enqueue", "latency"]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _setup() -> Any:
    django.setup()
    from .benchapp import tasks  # importable only once Django is set up

    return tasks


def enqueue(n: int, workdir: Path) -> dict[str, Any]:
    """Enqueue ``n`` ``record`` tasks, then ``n`` no-op ones, one ``enqueue()`` call at a time,
    after one untimed call that opens the connection; keep their ids for the drain."""
    tasks = _setup()
    ids: dict[str, list[str]] = {"record": [], "noop": []}
    calls = iter(range(n))

    def one() -> None:
        ids["record"].append(str(tasks.record.enqueue(*site_args(next(calls))).id))

    def one_noop() -> None:
        ids["noop"].append(str(tasks.noop.enqueue().id))

    tasks.stamp.enqueue()  # untimed: the connection (and the file) open here
    total_ns, durations = time_calls(one, n)
    noop_ns, noop_durations = time_calls(one_noop, n)
    (workdir / "ids.json").write_text(json.dumps(ids))
    return {
        "total_ns": total_ns,
        "call_ns": durations,
        "noop_total_ns": noop_ns,
        "noop_call_ns": noop_durations,
    }


def _ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exactly (the settings set USE_TZ, so values are aware)."""
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def drain_window(workdir: Path) -> dict[str, Any]:
    """Read back the enqueued tasks' own start and finish times, per task."""
    tasks = _setup()
    ids = json.loads((workdir / "ids.json").read_text())
    return {name: _window(getattr(tasks, name), ids[name]) for name in ids}


def _window(task: Any, ids: list[str]) -> dict[str, Any]:
    starts: list[int] = []
    finishes: list[int] = []
    unfinished = 0
    for result_id in ids:
        result = task.get_result(result_id)
        if result.status != "SUCCESSFUL" or result.started_at is None or result.finished_at is None:
            unfinished += 1
            continue
        starts.append(_ns(result.started_at))
        finishes.append(_ns(result.finished_at))
    return {
        "first_start_ns": min(starts, default=None),
        "last_finish_ns": max(finishes, default=None),
        "count": len(starts),
        "unfinished": unfinished,
    }


def _started_ns(tasks: Any, result_id: str) -> int | None:
    result = tasks.stamp.get_result(result_id)
    if result.status != "SUCCESSFUL":
        return None
    return int(result.return_value)


def latency(probes: int, settle_s: float, timeout_s: float) -> dict[str, Any]:
    """Measure enqueue-to-start latency against the running worker."""
    tasks = _setup()
    return measure_latency(
        lambda: str(tasks.stamp.enqueue().id),
        lambda result_id: _started_ns(tasks, result_id),
        probes=probes,
        settle_s=settle_s,
        timeout_s=timeout_s,
    )
