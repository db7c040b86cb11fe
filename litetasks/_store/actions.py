"""What an operator does to jobs: cancel, retry, prune (and list the failed ones)."""

from __future__ import annotations

import enum
import json
from collections.abc import Collection
from typing import Any

import apsw

from . import sql
from .enqueueing import enqueue_hooks
from .handle import Handle
from .reading import in_queues
from .recording import error_json
from .records import ErrorRecord, JobState
from .rows import returned_hooks
from .stats import count_finished

__all__ = [
    "CANCELLED_ERROR",
    "CancelResult",
    "cancel",
    "cancel_requested",
    "failed_job_ids",
    "prune",
    "prune_step",
    "retry",
]


class CancelResult(str, enum.Enum):
    """What ``Store.cancel`` did to one job."""

    CANCELLED = "cancelled"  # it was READY: now FAILED, it never runs
    CANCELLING = "cancelling"  # it is RUNNING: its worker interrupts it and records it FAILED
    FINISHED = "finished"  # already SUCCESSFUL or FAILED: unchanged
    NOT_FOUND = "not found"

    def __str__(self) -> str:
        return self.value


CANCELLED_ERROR = ErrorRecord(
    exception_class_path="litetasks.exceptions.TaskCancelled",
    traceback="litetasks.exceptions.TaskCancelled: cancelled before it ran.\n",
)


def cancel(handle: Handle, job_ids: Collection[str], error: ErrorRecord) -> dict[str, CancelResult]:
    """Cancel jobs in one transaction: a READY job is FAILED with ``error`` and never runs;
    a RUNNING one is flagged, and its worker interrupts it (see ``cancel_requested``)."""
    results: dict[str, CancelResult] = {}
    params: dict[str, Any] = {"now": handle.now(), "error": error_json(error)}
    with handle.write() as db:
        for job_id in job_ids:
            results[job_id] = _cancel_one(handle, db, job_id, params)
        count_finished(handle, db, [i for i, r in results.items() if r is CancelResult.CANCELLED])
    if handle.hooked:
        handle.ready()
    return results


def _cancel_one(
    handle: Handle, db: apsw.Connection, job_id: str, params: dict[str, Any]
) -> CancelResult:
    row = db.execute(sql.CANCEL_READY, {**params, "job_id": job_id}).fetchone()
    if row is not None:
        state, hooks_kind, hooks = row
        raw = returned_hooks(hooks_kind, hooks)
        if raw is not None:
            enqueue_hooks(handle, db, job_id, JobState(state), raw)
        return CancelResult.CANCELLED
    db.execute(sql.CANCEL_RUNNING, {"job_id": job_id})
    if db.changes():
        return CancelResult.CANCELLING
    return CancelResult.FINISHED if _exists(db, job_id) else CancelResult.NOT_FOUND


def cancel_requested(handle: Handle, worker_id: str) -> list[str]:
    """Return the ids of ``worker_id``'s RUNNING jobs that someone asked to cancel."""
    with handle.translated:
        rows = handle.db.execute(sql.CANCEL_REQUESTED, {"worker_id": worker_id}).fetchall()
    return [str(row[0]) for row in rows]


def retry(handle: Handle, job_ids: Collection[str]) -> dict[str, str]:
    """Make FAILED jobs READY again with a fresh attempt budget, in one transaction.

    Returns, per id, ``"retried"``, ``"not failed"`` (READY, RUNNING or SUCCESSFUL: left
    alone), ``"duplicate"`` (a unique job whose twin is READY or RUNNING) or ``"not found"``.
    """
    results: dict[str, str] = {}
    now = handle.now()
    with handle.write() as db:
        for job_id in job_ids:
            try:
                db.execute(sql.RETRY, {"job_id": job_id, "now": now})
            except apsw.ConstraintError:
                results[job_id] = "duplicate"
                continue
            if db.changes():
                results[job_id] = "retried"
                continue
            results[job_id] = "not failed" if _exists(db, job_id) else "not found"
    if "retried" in results.values():
        handle.ready()
    return results


def failed_job_ids(handle: Handle, queues: Collection[str] | None) -> list[str]:
    """Return the ids of every FAILED job (of ``queues``), oldest first."""
    where, params = in_queues(queues)
    with handle.translated:
        rows = handle.db.execute(
            f"SELECT job_id FROM jobs WHERE state = 'FAILED'{where} ORDER BY seq", params
        ).fetchall()
    return [str(row[0]) for row in rows]


def prune(
    handle: Handle, *, finished_before_us: int, states: Collection[JobState], batch: int
) -> int:
    """Delete jobs in ``states`` that finished before ``finished_before_us``; return how many.

    Works through the table ``batch`` rows per transaction, oldest first (``prune_step``),
    so writers wait at most one short transaction. READY and RUNNING jobs are never deleted.
    """
    deleted = 0
    after: int | None = 0
    while after is not None:
        count, after = prune_step(
            handle, finished_before_us=finished_before_us, states=states, after=after, batch=batch
        )
        deleted += count
    return deleted


def prune_step(
    handle: Handle,
    *,
    finished_before_us: int,
    states: Collection[JobState],
    after: int,
    batch: int,
) -> tuple[int, int | None]:
    """Prune the ``batch`` rows after ``after`` (a position; 0: the start) in one transaction.

    Returns how many were deleted and where the next step starts, or None when the walk is
    over: at the end of the table, or at a window holding jobs enqueued after the cut-off
    (they cannot have finished before it).
    """
    names = [JobState(s) for s in states]
    if not all(state.is_finished for state in names):
        raise ValueError("Only SUCCESSFUL and FAILED jobs can be pruned.")
    if batch < 1:
        raise ValueError(f"batch must be at least 1 (got {batch!r}).")
    params: dict[str, Any] = {
        "after": after,
        "batch": batch,
        "states": json.dumps([state.value for state in names]),
        "before": finished_before_us,
    }
    with handle.write() as db:
        upto, newest = db.execute(sql.PRUNE_WINDOW_END, params).fetchone() or (None, None)
        if upto is None:
            return 0, None
        db.execute(sql.PRUNE, {**params, "upto": upto})
        deleted = db.changes()
    done = newest is not None and int(newest) >= finished_before_us
    return deleted, None if done else int(upto)


def _exists(db: apsw.Connection, job_id: str) -> bool:
    return db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is not None
