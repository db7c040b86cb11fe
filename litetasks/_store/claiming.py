"""Claim due READY jobs for a worker, in the caller's write transaction.

The claim is one ``UPDATE … RETURNING`` (see ``sql.PICK``), so two workers can never claim the
same job. A claimed row litetasks cannot read fails there and then (``malformed``); a batch that
cannot grow because one row is too big is claimed again one by one (``rowlimits``).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import apsw

from . import sql
from .clock import EARLIEST_US, LATEST_US
from .enqueueing import enqueue_hooks
from .handle import Handle
from .malformed import fail_malformed, with_problem
from .pausing import paused_queues_for_claim
from .records import JobRecord, JobState
from .rowlimits import TooBigToClaim, claim_one_by_one
from .rows import decode_job, decode_rows
from .stats import count_finished

__all__ = ["anything_due", "claim_due"]


def claim_due(
    handle: Handle,
    db: apsw.Connection,
    worker_id: str,
    queues: Collection[str] | None,
    limit: int,
    skip: Collection[str],
    one_by_one: bool,
) -> list[JobRecord]:
    """Claim up to ``limit`` due jobs under ``worker_id``; return them in claim order.

    Claim order: priority descending, then due time, then enqueue order. Raises
    ``TooBigToClaim`` when a row cannot grow, unless ``one_by_one`` (then such a job fails).
    """
    jobs: list[JobRecord] = []
    while len(jobs) < limit:
        rows = _claim_rows(handle, db, worker_id, queues, limit - len(jobs), one_by_one, skip)
        claimed = _claimed(handle, db, rows, worker_id) if rows else []
        jobs += claimed  # each round takes what sorts after the rounds before it
        if len(claimed) == len(rows):  # none failed: nothing more is due, or enough
            break
    return jobs


def anything_due(
    handle: Handle, worker_id: str, queues: Collection[str] | None, skip: Collection[str]
) -> bool:
    """Whether a claim would find a due job now; read without taking the write lock.

    A pool claims at every wake-up, and when several pools serve one file each ring wakes them
    all, so most such claims find nothing: as write transactions they held off every producer
    while they ran (under a sustained load 30 % of the pools' transactions changed nothing).
    The read is the claim's own first statement (``sql.PICK``), limited to one job. A job
    committed after it rings the doorbell again, so the pool looks again.
    """
    with handle.translated:
        plan = _claim_plan(handle, handle.db, worker_id, queues, 1, skip)
        if plan is None:
            return False
        (pick, _claim, _due), params = plan
        row: Any = handle.db.execute(pick, params).fetchone()
    return bool(row[0] != "[]")


def _claimed(
    handle: Handle, db: apsw.Connection, rows: list[Any], worker_id: str
) -> list[JobRecord]:
    """The jobs of ``rows`` (just claimed, in claim order) to run, in that order.

    A job whose row holds values litetasks cannot read fails here, in the claiming
    transaction, and is not returned (see malformed.py); the others are claimed as usual.
    Such jobs fail in claim order, so that their hooks are enqueued, and so run, in it too.
    """
    jobs: list[JobRecord] = []
    for row in rows:
        job = decode_job(row)
        due_at, seq = row[sql.CLAIMED_DUE_AT], row[sql.CLAIMED_SEQ]
        if not (type(due_at) is int and EARLIEST_US <= due_at <= LATEST_US):
            job = with_problem(job, "due_at", due_at)
        if job.malformed:
            hooks = fail_malformed(db, job, seq, worker_id, handle.now())
            enqueue_hooks(handle, db, job.job_id, JobState.FAILED, hooks)
            count_finished(handle, db, [job.job_id])
            continue
        jobs.append(job)
    return jobs


def _claim_rows(
    handle: Handle,
    db: apsw.Connection,
    worker_id: str,
    queues: Collection[str] | None,
    limit: int,
    one_by_one: bool,
    skip: Collection[str],
) -> list[Any]:
    plan = _claim_plan(handle, db, worker_id, queues, limit, skip)
    if plan is None:
        return []
    (pick, statement, due), params = plan
    if not one_by_one:
        try:
            return _take(db, pick, params)
        except apsw.TooBigError:
            raise TooBigToClaim from None
    rows, failed = claim_one_by_one(db, statement, due, params, handle.max_row_bytes())
    for job_id, hooks in failed:
        if hooks is not None:
            enqueue_hooks(handle, db, job_id, JobState.FAILED, hooks)
    count_finished(handle, db, [job_id for job_id, _ in failed])
    return rows


def _claim_plan(
    handle: Handle,
    db: apsw.Connection,
    worker_id: str,
    queues: Collection[str] | None,
    limit: int,
    skip: Collection[str],
) -> tuple[tuple[str, str, str], dict[str, Any]] | None:
    """A claim's (PICK, CLAIM, DUE) statements (``sql.CLAIMS``) and their bindings; None when
    every queue to serve is paused."""
    params: dict[str, Any] = {"worker_id": worker_id, "now": handle.now(), "limit": limit}
    served = _served(handle, db, queues, params)
    if served is None:
        return None
    if skip:
        params["skip"] = json.dumps(sorted(skip))
    return sql.CLAIMS[served, bool(skip)], params


def _served(
    handle: Handle, db: apsw.Connection, queues: Collection[str] | None, params: dict[str, Any]
) -> str | None:
    """Which claim statement serves ``queues`` less the paused ones (see ``sql.CLAIMS``), its
    queue bindings added to ``params``; None when every queue to serve is paused."""
    if isinstance(queues, str):
        raise TypeError(f"queues must be a collection of names, not the string {queues!r}.")
    paused = paused_queues_for_claim(handle, db)
    if queues is None:
        if not paused:
            return "any"
        params["paused"] = json.dumps(sorted(paused))
        return "unpaused"
    if paused:
        queues = [queue for queue in queues if queue not in paused]
    if not queues:
        return None
    if len(queues) == 1:
        params["queue"] = next(iter(queues))
        return "one"
    params["queues"] = json.dumps(sorted(queues))
    return "some"


def _take(db: apsw.Connection, pick: str, params: dict[str, Any]) -> list[Any]:
    """Claim the best due jobs (``sql.PICK_*`` picks them); return their rows, in claim order.

    Rows come back as one JSON text (one step of one statement, see ``sql.PICK``); one by one
    when a value cannot travel so (a blob, as in a row written by other code, see
    ``sql.TAKEN``); and with text read from blobs when some text is not UTF-8.
    """
    seqs = db.execute(pick, params).fetchone()[0]  # type: ignore[index]
    if seqs == "[]":
        return []
    db.execute(sql.TAKE, {**params, "seqs": seqs})
    rank = {seq: i for i, seq in enumerate(json.loads(seqs))}  # PICK gives the claim order
    return sorted(_taken(db, seqs), key=lambda row: rank[row[sql.CLAIMED_SEQ]])


def _taken(db: apsw.Connection, seqs: str) -> list[Any]:
    """The rows just taken (the seqs in ``seqs``, a JSON list), in any order."""
    try:
        taken: Any = db.execute(sql.TAKEN, {"seqs": seqs}).fetchone()
        return list(json.loads(taken[0]))
    except (apsw.TooBigError, apsw.SQLError, ValueError):
        pass
    try:
        return db.execute(sql.TAKEN_ROWS, {"seqs": seqs}).fetchall()
    except UnicodeDecodeError:
        return decode_rows(db.execute(sql.TAKEN_ROWS_RAW, {"seqs": seqs}).fetchall())
