"""Print a queue file's contents for ``litetasks status``: counts, live workers, stranded tasks."""

from __future__ import annotations

import json
from datetime import timezone, tzinfo
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from .._store.liveness import classify_workers, this_process
from .._store.records import JobState, WorkerRecord

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend

__all__ = ["print_status", "status_data"]


def status_data(backend: SQLiteBackend) -> dict[str, Any]:
    """Return the status as plain data: counts per queue and state, workers, stranded tasks."""
    store = backend.store
    queues: dict[str, dict[str, int]] = {}
    for (queue, state), count in sorted(store.counts().items()):
        queues.setdefault(queue, {s.value: 0 for s in JobState})[state.value] = count
    for queue in sorted(backend.queues):
        queues.setdefault(queue, {s.value: 0 for s in JobState})
    now = store.now_us()
    workers = store.get_workers()
    lost = _lost_workers(workers, now, backend.config.worker.lease_s)
    registered = {w.worker_id for w in workers}
    stranded = sorted(
        owner for owner in store.get_running_owners() if owner in lost or owner not in registered
    )
    return {
        "backend": backend.alias,
        "path": str(backend.config.store.path),
        "queues": queues,
        "workers": [_worker_data(w, now, w.worker_id in lost) for w in workers],
        "stranded_workers": stranded,
        "unserved_queues": _unserved(queues, workers, lost),
        "periodic": _periodic(backend),
        "paused_queues": sorted(store.pausing.paused_queues()),
    }


def _periodic(backend: SQLiteBackend) -> list[dict[str, Any]]:
    """Each periodic schedule: what, when, the next slot and the last one enqueued."""
    from .._django.periodic import load_schedules
    from .._runtime.scheduler import Scheduler

    schedules = load_schedules(backend)
    recorded = backend.store.schedules()
    paused = backend.store.pausing.paused_schedules()
    upcoming = Scheduler(backend, schedules).next_runs()
    rows = []
    for name, schedule in sorted(schedules.items()):
        last_slot, last_job = recorded.get(name, (None, None))
        following = upcoming[name]
        rows.append(
            {
                "name": name,
                "task": schedule.task_path,
                "schedule": schedule.description,
                "next_run": _moment(following, schedule.tz),
                "next_run_utc": _moment(following, timezone.utc),
                "last_slot": _moment(last_slot, schedule.tz),
                "last_job_id": last_job,
                "paused": name in paused,
            }
        )
    return rows


def _moment(us: int | None, tz: tzinfo) -> str | None:
    from .._django.periodic import datetime_at

    if us is None:
        return None
    return datetime_at(us, tz).isoformat(timespec="seconds")


def _unserved(
    queues: dict[str, dict[str, int]], workers: list[WorkerRecord], lost: set[str]
) -> list[str]:
    """Queues holding READY tasks that no live worker serves (while some worker runs)."""
    live = [w for w in workers if w.worker_id not in lost]
    if not live or any(w.queues is None for w in live):
        return []
    served = {queue for w in live for queue in w.queues or ()}
    return sorted(q for q, by_state in queues.items() if by_state["READY"] and q not in served)


def _lost_workers(workers: list[WorkerRecord], now_us: int, lease_s: float) -> set[str]:
    dead, alive = classify_workers(workers, this_process())
    stale = {w.worker_id for w in workers if now_us - w.heartbeat_at_us > lease_s * 1_000_000}
    return set(dead) | (stale - set(alive))


def _worker_data(worker: WorkerRecord, now_us: int, is_lost: bool) -> dict[str, Any]:
    return {
        "worker_id": worker.worker_id,
        "pid": worker.pid,
        "host": worker.host,
        "queues": list(worker.queues) if worker.queues is not None else None,
        "running": list(worker.current_job_ids),
        "threads": worker.threads,  # None: unknown (registered by an older litetasks)
        "heartbeat_age_s": round((now_us - worker.heartbeat_at_us) / 1_000_000, 1),
        "is_lost": is_lost,
    }


def print_status(backend: SQLiteBackend, *, as_json: bool, console: Console | None = None) -> None:
    """Print ``status_data`` as JSON or as tables (on ``console``: watch.py captures it)."""
    data = status_data(backend)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    console = console or Console()
    table = _table(f"litetasks: {data['path']}", "queue")
    # FORWARDED (litetasks forward) only once some task was forwarded.
    states = [s for s in JobState if s is not JobState.FORWARDED or _any_forwarded(data)]
    for state in states:
        table.add_column(state.value, justify="right", overflow="fold")
    for queue, by_state in data["queues"].items():
        shown = f"{queue} (paused)" if queue in data["paused_queues"] else queue
        table.add_row(shown, *(str(by_state[s.value]) for s in states))
    console.print(table)
    if data["workers"]:
        console.print(_workers_table(data["workers"]))
    else:
        console.print("No worker is running. Start one with: litetasks run")
    if data["periodic"]:
        console.print(_periodic_table(data["periodic"]))
    _print_advice(console, data)


def _table(title: str, *columns: str) -> Table:
    """A table whose cells wrap, never cut: a narrow terminal (80 columns) still shows every
    queue name, task path and id whole, on several lines if need be."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _workers_table(rows: list[dict[str, Any]]) -> Table:
    table = _table(
        "workers", "pid", "host", "queues", "running", "threads", "last heartbeat", "state"
    )
    for worker in rows:
        table.add_row(
            str(worker["pid"]),
            worker["host"],
            "\n".join(worker["queues"] or ["*"]),
            "\n".join(worker["running"]) or "-",
            "-" if worker["threads"] is None else str(worker["threads"]),
            f"{worker['heartbeat_age_s']} s ago",
            "LOST" if worker["is_lost"] else "alive",
        )
    return table


def _print_advice(console: Console, data: dict[str, Any]) -> None:
    """What to do about paused queues, queues nobody serves and tasks left RUNNING by lost
    workers."""
    for queue in data["paused_queues"]:
        console.print(f"Queue {queue!r} is paused: resume it with `litetasks resume {queue}`.")
    for queue in data["unserved_queues"]:
        console.print(
            f"Queue {queue!r} has {data['queues'][queue]['READY']} READY task(s) and no live "
            f"worker serves it: start one with `litetasks run --queue {queue}`."
        )
    if data["stranded_workers"]:
        console.print(
            "Tasks are RUNNING under lost workers: "
            f"{', '.join(data['stranded_workers'])}. The next `litetasks run` recovers them."
        )


def _periodic_table(rows: list[dict[str, Any]]) -> Table:
    table = _table(
        "periodic tasks", "name", "task", "schedule", "next run", "next run (UTC)", "last slot"
    )
    for row in rows:
        table.add_row(
            row["name"],
            row["task"],
            row["schedule"],
            "paused" if row["paused"] else row["next_run"] or "-",
            "paused" if row["paused"] else row["next_run_utc"] or "-",
            row["last_slot"] or "never",
        )
    return table


def _any_forwarded(data: dict[str, Any]) -> bool:
    return any(by_state["FORWARDED"] for by_state in data["queues"].values())
