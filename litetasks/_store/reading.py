"""Read the queue file: one job, the counts per queue and state, the next due time."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ..exceptions import JobNotFound
from . import sql
from .clock import is_time
from .handle import Handle
from .pausing import paused_queues_for_claim
from .records import JobRecord, JobState
from .rows import decode_job, decode_rows

__all__ = ["Left", "counts", "get", "in_queues", "left", "next_due_at"]

_JOB = f"SELECT {sql.JOB_COLUMNS} FROM jobs WHERE job_id = ?"
# Read as bytes: text that is not UTF-8 (written by other code) cannot fail this.
_COUNTS = """
SELECT CAST(queue_name AS BLOB), state, count(*) FROM jobs GROUP BY queue_name, state
"""
# A state litetasks does not know (written by other code) is no state it counts: no worker
# claims, recovers or prunes such a job.
_KNOWN_STATES = {state.value: state for state in JobState}


def get(handle: Handle, job_id: str) -> JobRecord:
    """Return the job ``job_id``; raise ``JobNotFound`` if there is none."""
    with handle.translated:
        try:
            row = handle.db.execute(_JOB, (job_id,)).fetchone()
        except UnicodeDecodeError:  # text that is not UTF-8, written by other code
            raw = handle.db.execute(sql.JOB_ROW_RAW, (job_id,)).fetchone()
            row = None if raw is None else decode_rows([raw])[0]
    if row is None:
        raise JobNotFound(job_id)
    return decode_job(row)


def counts(handle: Handle) -> dict[tuple[str, JobState], int]:
    """Return the number of jobs per ``(queue_name, state)``."""
    with handle.translated:
        rows: list[Any] = handle.db.execute(_COUNTS).fetchall()
    return {
        (bytes(queue).decode("utf-8", "replace"), _KNOWN_STATES[state]): int(count)
        for queue, state, count in rows
        if state in _KNOWN_STATES
    }


def next_due_at(
    handle: Handle, queues: Collection[str] | None, skip: Collection[str]
) -> int | None:
    """Return the earliest ``due_at`` of a READY job in ``queues`` (None: no READY job),
    leaving out jobs whose task path is in ``skip`` and paused queues (as the claim does)."""
    where, params = in_queues(queues)
    paused = paused_queues_for_claim(handle)  # as the claim sees them, or a worker would spin
    if paused:
        where += " AND queue_name NOT IN (SELECT value FROM json_each(?))"
        params = (*params, json.dumps(sorted(paused)))
    if skip:
        where += " AND task_path NOT IN (SELECT value FROM json_each(?))"
        params = (*params, json.dumps(sorted(skip)))
    with handle.translated:
        row = handle.db.execute(
            f"SELECT min(due_at) FROM jobs WHERE state = 'READY'{where}", params
        ).fetchone()
    if row is None or row[0] is None:
        return None
    # A due time that is not a time litetasks stores (written by other code) is due now:
    # the claim takes such a job, and fails it.
    return row[0] if is_time(row[0]) else handle.now()


def in_queues(queues: Collection[str] | None) -> tuple[str, tuple[str, ...]]:
    """A condition (and its binding) limiting a query to ``queues``; none for every queue."""
    if queues is None:
        return "", ()
    return " AND queue_name IN (SELECT value FROM json_each(?))", (json.dumps(list(queues)),)


@dataclass(frozen=True, slots=True)
class Left:
    """What a drain of some queues did and left: the jobs its workers ran, by state now, and
    the jobs of those queues still READY or RUNNING."""

    ran: dict[JobState, int]  # jobs its workers attempted since it started, by their state now
    ready_now: int  # READY and due
    ready_later: int  # READY, due later (deferred, or a retry waiting for its back-off)
    running: int  # RUNNING (under other workers)
    next_due_us: int | None  # the due time of the first READY job later


_RAN = """
SELECT state, count(*) FROM jobs
WHERE EXISTS (
    SELECT 1 FROM json_each(CASE WHEN json_valid(worker_ids) THEN worker_ids ELSE '[]' END)
    WHERE substr(value, 1, length(:prefix)) = :prefix
) AND (finished_at IS NULL OR finished_at >= :since)
GROUP BY state
"""


def left(
    handle: Handle, queues: Collection[str] | None, worker_prefix: str | None, since_us: int
) -> Left:
    """Count what the workers whose ids start with ``worker_prefix`` ran since ``since_us``
    (None: do not count; it reads every row), and what is left READY or RUNNING in
    ``queues`` (None: every queue)."""
    where, params = in_queues(queues)
    now = handle.now()
    with handle.translated:
        ran: list[Any] = []
        if worker_prefix is not None:
            ran = handle.db.execute(_RAN, {"prefix": worker_prefix, "since": since_us}).fetchall()
        row: Any = handle.db.execute(
            "SELECT sum(state = 'READY' AND due_at <= ?), sum(state = 'READY' AND due_at > ?),"
            " sum(state = 'RUNNING'), min(CASE WHEN state = 'READY' AND due_at > ? THEN due_at END)"
            f" FROM jobs WHERE state IN ('READY', 'RUNNING'){where}",
            (now, now, now, *params),
        ).fetchone()
    return Left(
        ran={_KNOWN_STATES[state]: int(n) for state, n in ran if state in _KNOWN_STATES},
        ready_now=int(row[0] or 0),
        ready_later=int(row[1] or 0),
        running=int(row[2] or 0),
        next_due_us=row[3] if is_time(row[3]) else None,
    )
