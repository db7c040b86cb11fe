"""Fail a claimed job whose row holds values litetasks cannot read, in the claiming transaction.

``rows.decode_job`` lists such values in ``JobRecord.malformed``. The claim then fails the job
with ``fail_malformed``: FAILED with a ``litetasks.exceptions.MalformedJob`` error that names each
bad column, its bad values replaced in the row so that it reads cleanly from then on. A row that
cannot even be written so is set aside (FAILED, nothing else written) and logged.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import apsw

from . import sql_bad_rows
from .clock import EARLIEST_US
from .records import ErrorRecord, Hook, JobRecord
from .rows import TIME_RULE, bad_value, shown

__all__ = [
    "MALFORMED_ERROR_PATH",
    "drop_bad_hooks",
    "fail_malformed",
    "malformed_error",
    "with_problem",
]

logger = logging.getLogger(__name__)

MALFORMED_ERROR_PATH = "litetasks.exceptions.MalformedJob"

# What replaces each column's bad value when a claim fails the job, and how to say so. The SET
# clauses are constants; fail_malformed joins those of the bad columns. ``errors`` is not here:
# it gets the job's error appended, or becomes a list of that error alone.
_REPAIRS: dict[str, tuple[str, str]] = {
    "job_id": ("job_id = 'malformed-' || seq", "'malformed-<seq>'"),
    "task_path": ("task_path = ''", "''"),
    "queue_name": ("queue_name = 'default'", "'default'"),
    "priority": ("priority = 0", "0"),
    "args": ("args = '[]'", "[]"),
    "kwargs": ("kwargs = '{}'", "{}"),
    # Not the claim's time: prune stops at rows enqueued after its cut-off (actions.prune_step),
    # so a repaired row must not look newer than the rows after it.
    "enqueued_at": (f"enqueued_at = {EARLIEST_US}", "the earliest time a queue file holds"),
    "run_after": ("run_after = NULL", "NULL"),
    "due_at": ("due_at = :now", "the time of the claim"),
    "started_at": ("started_at = :now", "the time of the claim"),
    "last_attempted_at": ("last_attempted_at = :now", "the time of the claim"),
    "finished_at": ("finished_at = :now", "the time of the claim"),
    "worker_ids": ("worker_ids = json_array(:worker_id), attempts = 1", "this claim's worker"),
    "attempts": ("worker_ids = json_array(:worker_id), attempts = 1", "1"),
    "max_attempts": (
        "max_attempts = CASE WHEN typeof(attempts) = 'integer' AND attempts > 0"
        " THEN attempts ELSE 1 END",
        "the attempts made",
    ),
    "return_value": ("return_value = NULL", "NULL"),
    "unique_key": ("unique_key = NULL", "NULL"),
    "cancel_requested": ("cancel_requested = 0", "0"),
    "hooks": ("hooks = NULL", "NULL"),
    "put_backs": ("put_backs = 0", "0"),
    "first_put_back_at": ("first_put_back_at = NULL", "NULL"),
}


def with_problem(job: JobRecord, column: str, value: Any, rule: str = TIME_RULE) -> JobRecord:
    """``job`` with one more bad value (a column the record does not hold, such as due_at)."""
    job.malformed = (*job.malformed, (column, bad_value(column, value, rule)))
    return job


def malformed_error(job: JobRecord) -> ErrorRecord:
    """The error of a job failed because its row holds values litetasks cannot read."""
    repaired = {column for column, _ in job.malformed}
    replaced = "; ".join(
        f"{column}: {_REPAIRS[column][1]}" for column in sorted(repaired) if column in _REPAIRS
    )
    if "errors" in repaired:
        replaced += ("; " if replaced else "") + "errors: a list of this error"
    text = (
        f"{MALFORMED_ERROR_PATH}: this task's row in the queue file holds values litetasks did "
        "not write and cannot read, so the task never ran: "
        + "; ".join(problem for _, problem in job.malformed)
        + f". They were replaced ({replaced}) so that the row can be read. Something other "
        "than litetasks wrote to the queue file (another program, a migration, a hand edit): "
        "find it, then enqueue the task again.\n"
    )
    return ErrorRecord(exception_class_path=MALFORMED_ERROR_PATH, traceback=text)


def fail_malformed(
    db: apsw.Connection, job: JobRecord, seq: int, worker_id: str, now: int
) -> tuple[Hook, ...]:
    """Fail ``job`` (just claimed by ``worker_id``, in this transaction) for its bad values.

    Returns the hooks to enqueue for it (none when its hooks are among the bad values, or the
    row had to be set aside).
    """
    columns = sorted({column for column, _ in job.malformed})
    problems = "; ".join(problem for _, problem in job.malformed)
    failure = _write_failure(db, job, seq, worker_id, now, columns)
    if failure is not None:  # the error could not be written: only what cannot fail is
        db.execute(sql_bad_rows.SET_ASIDE, {"seq": seq})
        logger.error(
            "Task id=%s path=%s: its row holds values litetasks cannot read (%s), and writing "
            "the error failed too (%s): set aside as FAILED, unchanged otherwise",
            job.job_id,
            job.task_path,
            problems,
            failure,
        )
        return ()
    logger.error(
        "Task id=%s path=%s: its row holds values litetasks cannot read (%s): FAILED without "
        "running",
        job.job_id,
        job.task_path,
        problems,
    )
    return () if "hooks" in columns else job.hooks


def _write_failure(
    db: apsw.Connection, job: JobRecord, seq: int, worker_id: str, now: int, columns: list[str]
) -> apsw.Error | str | None:
    """Write the job's error and repairs (``sql_bad_rows.FAIL_MALFORMED``); None, or why it
    failed."""
    error = malformed_error(job)
    repairs = ",\n    ".join(dict.fromkeys(_REPAIRS[c][0] for c in columns if c in _REPAIRS))
    statement = sql_bad_rows.FAIL_MALFORMED.format(repairs=repairs + "," if repairs else "")
    params: dict[str, Any] = {
        "seq": seq,
        "worker_id": worker_id,
        "now": now,
        "keep": "errors" not in columns,
        "error": json.dumps(
            {"exception_class_path": error.exception_class_path, "traceback": error.traceback}
        ),
    }
    try:
        with db:  # a savepoint: a statement that fails half-way leaves nothing behind
            row: Any = db.execute(statement, params).fetchone()
    except (apsw.TooBigError, apsw.ConstraintError, apsw.SQLError) as exc:
        return exc
    return "no row matched" if row is None else None


def drop_bad_hooks(db: apsw.Connection, job_id: str, hooks_json: Any) -> None:
    """A finished job's ``hooks`` cannot be read: enqueue none, set it NULL, and say so in
    the job's errors (in the caller's transaction)."""
    text = (
        f"{MALFORMED_ERROR_PATH}: column 'hooks' of this task's row holds {shown(hooks_json)}, "
        "not a JSON list of hooks (it was written by something other than litetasks), so no "
        "hook was enqueued when the task finished; it was set to NULL.\n"
    )
    db.execute(
        sql_bad_rows.DROP_HOOKS,
        {
            "job_id": job_id,
            "error": json.dumps({"exception_class_path": MALFORMED_ERROR_PATH, "traceback": text}),
        },
    )
    logger.error(
        "Task id=%s finished, but its hooks cannot be read (%s): none was enqueued",
        job_id,
        shown(hooks_json),
    )
