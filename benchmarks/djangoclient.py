"""Client-side actions for systems behind Django's task API (litetasks, django-tasks-db).

Runs in a subprocess whose ``DJANGO_SETTINGS_MODULE`` names the system's settings.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import django

from .measure import measure_latency, time_calls

__all__ = ["drain_window", "enqueue", "latency"]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _setup() -> Any:
    django.setup()
    from .benchapp import tasks  # importable only once Django is set up

    return tasks


def enqueue(n: int, workdir: Path) -> dict[str, Any]:
    """Enqueue ``n`` no-op tasks one ``enqueue()`` call at a time; keep their ids for the drain."""
    tasks = _setup()
    ids: list[str] = []

    def one() -> None:
        ids.append(str(tasks.noop.enqueue().id))

    total_ns, durations = time_calls(one, n)
    (workdir / "ids.json").write_text(json.dumps(ids))
    return {"total_ns": total_ns, "call_ns": durations}


def _ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exactly (the settings set USE_TZ, so values are aware)."""
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def drain_window(workdir: Path) -> dict[str, Any]:
    """Read back the enqueued tasks' own start and finish times."""
    tasks = _setup()
    ids = json.loads((workdir / "ids.json").read_text())
    starts: list[int] = []
    finishes: list[int] = []
    unfinished = 0
    for result_id in ids:
        result = tasks.noop.get_result(result_id)
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
