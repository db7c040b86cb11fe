"""The worker registry and the recovery of lost workers' jobs.

A worker registers a row with its process identity (see ``liveness``) and heartbeats it. A
worker is lost when it is dead (judged by pid) or silent past the lease; recovery makes its
RUNNING jobs READY again (attempts left) or FAILED (``WorkerLost``), and deletes its row.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from . import sql
from .enqueueing import enqueue_hooks
from .handle import Handle
from .recording import error_json, release
from .records import ErrorRecord, JobState, WorkerRecord
from .rows import returned_hooks, returned_text
from .stats import count_finished

__all__ = [
    "CANCELLED_LOST_ERROR",
    "get_running_owners",
    "get_workers",
    "heartbeat",
    "recover_lost",
    "register_worker",
    "unregister_worker",
]

CANCELLED_LOST_ERROR = ErrorRecord(
    exception_class_path="litetasks.exceptions.TaskCancelled",
    traceback=(
        "litetasks.exceptions.TaskCancelled: cancelled while it ran; its worker stopped before "
        "recording an outcome.\n"
    ),
)

_REGISTER = """
INSERT OR REPLACE INTO workers
    (worker_id, pid, host, boot_id, proc_start, pid_namespace, queues, threads, started_at,
     heartbeat_at)
VALUES (:worker_id, :pid, :host, :boot_id, :proc_start, :pid_namespace, :queues, :threads,
        :started_at, :now)
"""
_WORKERS = """
SELECT worker_id, pid, host, boot_id, proc_start, pid_namespace, queues, threads, started_at,
       heartbeat_at
FROM workers ORDER BY started_at
"""


def register_worker(handle: Handle, worker: WorkerRecord) -> None:
    """Add (or replace) a worker row; its heartbeat starts now."""
    with handle.write() as db:
        db.execute(
            _REGISTER,
            {
                "worker_id": worker.worker_id,
                "pid": worker.pid,
                "host": worker.host,
                "boot_id": worker.boot_id,
                "proc_start": worker.proc_start,
                "pid_namespace": worker.pid_namespace or None,
                "queues": None if worker.queues is None else json.dumps(list(worker.queues)),
                "threads": worker.threads,
                "started_at": worker.started_at_us,
                "now": handle.now(),
            },
        )


def heartbeat(handle: Handle, worker_id: str) -> bool:
    """Refresh ``worker_id``'s heartbeat; False if its row is gone (it was declared lost)."""
    with handle.write() as db:
        db.execute(
            "UPDATE workers SET heartbeat_at = :now WHERE worker_id = :worker_id",
            {"now": handle.now(), "worker_id": worker_id},
        )
        return db.changes() == 1


def unregister_worker(handle: Handle, worker_id: str) -> list[str]:
    """Release ``worker_id``'s RUNNING jobs and delete its row; return the released ids."""
    released = release(handle, worker_id, None)
    with handle.write() as db:
        db.execute("DELETE FROM workers WHERE worker_id = :worker_id", {"worker_id": worker_id})
    return released


def recover_lost(
    handle: Handle,
    *,
    stale_before_us: int,
    error: ErrorRecord,
    known_dead: Collection[str],
    known_alive: Collection[str],
) -> list[tuple[str, JobState]]:
    """Recover the RUNNING jobs of lost workers; return ``(job_id, new_state)`` pairs.

    A worker is lost when it is in ``known_dead``, or when it is not in ``known_alive`` and
    has no row with a heartbeat at or after ``stale_before_us``. Its jobs go back to READY
    when attempts remain, else to FAILED; either way ``error`` is appended to their errors
    (``CANCELLED_LOST_ERROR`` instead for a job someone asked to cancel). Lost workers' rows
    are deleted in the same transaction.
    """
    lost: dict[str, Any] = {
        "dead": json.dumps(list(known_dead)),
        "alive": json.dumps(list(known_alive)),
        "stale_before": stale_before_us,
    }
    recovery = {
        **lost,
        "now": handle.now(),
        "error": error_json(error),
        "cancel_error": error_json(CANCELLED_LOST_ERROR),
    }
    with handle.write() as db:
        rows = db.execute(sql.RECOVER, recovery).fetchall()
        for raw_id, state, hooks_kind, hooks in rows:
            raw = returned_hooks(hooks_kind, hooks)
            if raw is not None:
                enqueue_hooks(handle, db, returned_text(raw_id), JobState(state), raw)
        db.execute(sql.FORGET_LOST_WORKERS, lost)
        recovered = [(returned_text(raw_id), JobState(state)) for raw_id, state, *_ in rows]
        count_finished(handle, db, [i for i, state in recovered if state is JobState.FAILED])
    if handle.hooked or any(state is JobState.READY for _, state in recovered):
        handle.ready()
    return recovered


def get_workers(handle: Handle) -> list[WorkerRecord]:
    """Return every registered worker with the ids of the jobs it is running."""
    with handle.translated:
        jobs: list[Any] = handle.db.execute(sql.RUNNING_JOBS).fetchall()
        rows: list[Any] = handle.db.execute(_WORKERS).fetchall()
    running: dict[str, list[str]] = {}
    for owner, job_id in jobs:
        running.setdefault(str(owner), []).append(str(job_id))
    return [_worker(row, running) for row in rows]


def _worker(row: Any, running: dict[str, list[str]]) -> WorkerRecord:
    worker_id, pid, host, boot_id, proc_start, namespace, queues, threads, started_at, beat = row
    return WorkerRecord(
        worker_id=str(worker_id),
        pid=int(pid),
        host=str(host),
        boot_id=str(boot_id),
        proc_start=int(proc_start),
        pid_namespace=str(namespace or ""),
        queues=None if queues is None else tuple(json.loads(str(queues))),
        threads=None if threads is None else int(threads),
        started_at_us=int(started_at),
        heartbeat_at_us=int(beat),
        current_job_ids=tuple(running.get(str(worker_id), ())),
    )


def get_running_owners(handle: Handle) -> set[str]:
    """Return the worker ids that own at least one RUNNING job."""
    with handle.translated:
        rows = handle.db.execute(
            "SELECT DISTINCT owner FROM jobs WHERE state = 'RUNNING'"
        ).fetchall()
    return {str(row[0]) for row in rows}
