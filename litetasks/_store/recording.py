"""Record outcomes of claimed attempts, and claim the next jobs, in one transaction; release jobs.

Recording is fenced on (owner, attempts): a worker whose job was recovered as lost meanwhile
matches no row, so an attempt is recorded exactly once, and its outcome does not count.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

import apsw

from . import sql
from .claiming import anything_due, claim_due
from .enqueueing import enqueue_hooks
from .faults import ACTIVE as FAULTS
from .faults import fault
from .handle import Handle
from .records import ErrorRecord, JobRecord, JobState, Outcome
from .rowlimits import TooBigToClaim
from .rows import returned_hooks, returned_text
from .stats import count_finished

__all__ = ["error_json", "record_and_claim", "release"]

# Successes whose return value is longer than this are recorded one by one: in a batch their
# JSON text would be escaped into the batch's JSON and decoded again by SQLite.
_BATCH_VALUE_MAX = 65_536


def record_and_claim(
    handle: Handle,
    outcomes: Sequence[Outcome],
    worker_id: str,
    queues: Collection[str] | None,
    limit: int,
    skip: Collection[str],
) -> tuple[list[bool], list[JobRecord]]:
    """Record ``outcomes``, then claim up to ``limit`` jobs, in one transaction.

    Returns, per outcome, whether it counted, and the claimed jobs in claim order.
    """
    if FAULTS and limit > 0:
        fault("claim.before_begin", handle.db)
    if not outcomes and (limit <= 0 or not anything_due(handle, worker_id, queues, skip)):
        return [], []  # nothing to write: no write transaction (see ``anything_due``)
    try:
        counted, jobs = _in_one_transaction(handle, outcomes, worker_id, queues, limit, skip)
    except TooBigToClaim:  # rolled back; once more, failing the rows that cannot grow
        counted, jobs = _in_one_transaction(handle, outcomes, worker_id, queues, limit, skip, True)
    if handle.hooked or any(
        o.retry_at_us is not None or o.put_back_due_us is not None for o in outcomes
    ):
        handle.ready()  # a retry, a hook's job or a put-back is READY: sleepers re-plan
    return counted, jobs


def _in_one_transaction(
    handle: Handle,
    outcomes: Sequence[Outcome],
    worker_id: str,
    queues: Collection[str] | None,
    limit: int,
    skip: Collection[str],
    one_by_one: bool = False,
) -> tuple[list[bool], list[JobRecord]]:
    with handle.write() as db:
        counted = _record_all(handle, db, outcomes)
        count_finished(handle, db, _finished_ids(outcomes, counted))
        jobs = claim_due(handle, db, worker_id, queues, limit, skip, one_by_one)
        if FAULTS and outcomes:
            fault("record.before_commit", db)
        if FAULTS and jobs:
            fault("claim.after_update", db)
    return counted, jobs


def _finished_ids(outcomes: Sequence[Outcome], counted: list[bool]) -> list[str]:
    """The ids of the jobs whose outcome counted and may have finished them (not put back)."""
    return [
        outcome.job_id
        for outcome, ok in zip(outcomes, counted, strict=True)
        if ok and outcome.put_back_due_us is None
    ]


def _record_all(handle: Handle, db: apsw.Connection, outcomes: Sequence[Outcome]) -> list[bool]:
    """Record ``outcomes`` in outcome order: a group of successes in one statement.

    The group is the successes known to have no hooks (``Outcome.has_hooks``), with short
    return values; if it is not recorded in full (a job was recovered as lost meanwhile),
    it is undone and every outcome is recorded one by one, which says which ones counted.
    One statement for the group costs about half of one per outcome.
    """
    batch: dict[str, Outcome] = {}
    for outcome in outcomes:
        if (
            outcome.error is None
            and outcome.has_hooks is False
            and outcome.return_json is not None
            and len(outcome.return_json) <= _BATCH_VALUE_MAX
            and outcome.job_id not in batch
        ):
            batch[outcome.job_id] = outcome
    if len(batch) < 2 or not _recorded_in_full(db, list(batch.values())):
        return [_record_one(handle, db, outcome) for outcome in outcomes]
    return [
        True if batch.get(outcome.job_id) is outcome else _record_one(handle, db, outcome)
        for outcome in outcomes
    ]


def _recorded_in_full(db: apsw.Connection, batch: list[Outcome]) -> bool:
    """Record the successes ``batch`` in one statement; undo it unless every one counted."""
    items = [
        [o.job_id, o.worker_id, o.attempt, o.started_at_us, o.finished_at_us, o.return_json]
        for o in batch
    ]
    db.execute("SAVEPOINT record_batch")
    db.execute(sql.RECORD_SUCCESSES, {"batch": json.dumps(items)})
    if db.changes() == len(batch):
        db.execute("RELEASE record_batch")
        return True
    db.execute("ROLLBACK TO record_batch")
    db.execute("RELEASE record_batch")
    return False


def _record_one(handle: Handle, db: apsw.Connection, outcome: Outcome) -> bool:
    params: dict[str, Any] = {
        "job_id": outcome.job_id,
        "worker_id": outcome.worker_id,
        "attempt": outcome.attempt,
        "started_at": outcome.started_at_us,
        "finished_at": outcome.finished_at_us,
    }
    if outcome.put_back_due_us is not None:
        params["due_at"] = outcome.put_back_due_us
        del params["started_at"]
        return db.execute(sql.PUT_BACK, params).fetchone() is not None
    if outcome.error is None:
        params["return_value"] = outcome.return_json
        row = db.execute(sql.RECORD_SUCCESS, params).fetchone()
    else:
        params["error"] = error_json(outcome.error)
        params["retry_at"] = outcome.retry_at_us
        row = db.execute(sql.RECORD_FAILURE, params).fetchone()
    if row is None:
        return False
    state, hooks_kind, hooks = row
    raw = returned_hooks(hooks_kind, hooks)
    if raw is not None:
        enqueue_hooks(handle, db, outcome.job_id, JobState(state), raw)
    return True


def release(handle: Handle, worker_id: str, job_ids: Collection[str] | None) -> list[str]:
    """Put ``worker_id``'s RUNNING jobs (all, or ``job_ids``) back to READY without counting
    the attempt; return the released ids."""
    ids = None if job_ids is None else json.dumps(list(job_ids))
    with handle.write() as db:
        rows = db.execute(sql.RELEASE, {"worker_id": worker_id, "job_ids": ids}).fetchall()
    if rows:
        handle.ready()
    return [returned_text(row[0]) for row in rows]


def error_json(error: ErrorRecord) -> str:
    """``error`` as the JSON object a row's ``errors`` list holds."""
    return json.dumps(
        {"exception_class_path": error.exception_class_path, "traceback": error.traceback}
    )
