"""Read stored job rows defensively: a row litetasks cannot read fails alone.

litetasks writes every row it reads, but now and then something else writes one behind its
back: another program, a bad migration, a hand edit. A value litetasks cannot read (JSON that
does not parse, text where a number belongs, a time outside the years a datetime holds) must not
crash a worker, abort the transaction that claims a batch (and every outcome recorded with it),
or stop the supervisor; and every other task must run.

``decode_job`` never raises: a value that is not what litetasks writes is replaced by a harmless
one and listed in ``JobRecord.malformed``. A claim fails such a job at once with ``fail_malformed``,
in the claiming transaction: FAILED with a ``litetasks.exceptions.MalformedJob`` error that names
each bad column, its bad values replaced in the row so that it reads cleanly from then on. A row
that cannot even be written so is set aside (FAILED, nothing else written) and logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import apsw

from . import sql
from .records import EARLIEST_US, LATEST_US, ErrorRecord, Hook, JobRecord, JobState, clamp_us

__all__ = [
    "MALFORMED_ERROR_PATH",
    "decode_job",
    "decode_rows",
    "drop_bad_hooks",
    "fail_malformed",
    "hooks_from_json",
    "is_time",
    "malformed_error",
    "returned_hooks",
    "returned_text",
    "with_problem",
]

logger = logging.getLogger(__name__)

MALFORMED_ERROR_PATH = "litetasks.exceptions.MalformedJob"
_STATES = {state.value: state for state in JobState}
_HOOK_WHENS = ("success", "failure", "finish")
_ERROR_KEYS = {"exception_class_path", "traceback"}

# Rules, as "... not <rule>".
_TEXT = "text"
_OPTIONAL_TEXT = "text or NULL"
_TIME = "a time in microseconds since the epoch from 0001-01-02 to 9999-12-30 UTC"
_OPTIONAL_TIME = _TIME + ", or NULL"

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
    "enqueued_at": ("enqueued_at = :now", "the time of the claim"),
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


def is_time(value: Any) -> bool:
    """Whether ``value`` is a stored time litetasks can convert (an int in range)."""
    return type(value) is int and EARLIEST_US <= value <= LATEST_US


def decode_job(row: Sequence[Any]) -> JobRecord:
    """Build the ``JobRecord`` of a row of ``sql.JOB_COLUMNS``; never raises.

    A value litetasks does not write is replaced (see ``JobRecord.malformed``).
    """
    try:
        job = _plain_job(row)
    except (KeyError, TypeError, ValueError, RecursionError):
        job = None
    return _checked_job(row) if job is None else job


def decode_rows(rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """``rows`` with text read from blobs (``sql.TAKEN_ROWS_RAW``): text that is not UTF-8
    stays a blob, which ``decode_job`` reports as not text."""
    return [tuple(_text_of(value) for value in row) for row in rows]


def _text_of(value: Any) -> Any:
    if type(value) is bytes:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def _plain_job(
    row: Sequence[Any], first: int = EARLIEST_US, last: int = LATEST_US
) -> JobRecord | None:
    """The record of a row exactly as litetasks writes it; None (or an error) otherwise.

    The fast path, for every claimed job: type and range checks, JSON decoded when not empty.
    """
    (
        job_id,
        task_path,
        queue_name,
        priority,
        args,
        kwargs,
        state,
        enqueued_at,
        run_after,
        started_at,
        last_attempted_at,
        finished_at,
        worker_ids,
        errors,
        return_value,
        attempts,
        max_attempts,
        owner,
        unique_key,
        cancel_requested,
        hooks,
        put_backs,
        first_put_back_at,
    ) = row[:23]
    if not (
        type(job_id) is type(task_path) is type(queue_name) is type(args) is type(kwargs) is str
        and type(worker_ids) is type(errors) is str
        and type(priority) is type(attempts) is type(max_attempts) is type(put_backs) is int
        and type(cancel_requested) is type(enqueued_at) is int
        and max_attempts > 0
        and first <= enqueued_at <= last
        and (run_after is None or (type(run_after) is int and first <= run_after <= last))
        and (started_at is None or (type(started_at) is int and first <= started_at <= last))
        and (
            last_attempted_at is None
            or (type(last_attempted_at) is int and first <= last_attempted_at <= last)
        )
        and (finished_at is None or (type(finished_at) is int and first <= finished_at <= last))
        and (
            first_put_back_at is None
            or (type(first_put_back_at) is int and first <= first_put_back_at <= last)
        )
        and (return_value is None or type(return_value) is str)
        and (owner is None or type(owner) is str)
        and (unique_key is None or type(unique_key) is str)
    ):
        return None
    if worker_ids == "[]":
        ids: tuple[str, ...] = ()
    else:
        decoded = json.loads(worker_ids)
        if type(decoded) is not list:
            return None
        for item in decoded:
            if type(item) is not str:
                return None
        ids = tuple(decoded)
    return JobRecord(
        job_id=job_id,
        task_path=task_path,
        queue_name=queue_name,
        priority=priority,
        args_json=args,
        kwargs_json=kwargs,
        state=_STATES[state],
        enqueued_at_us=enqueued_at,
        run_after_us=run_after,
        started_at_us=started_at,
        last_attempted_at_us=last_attempted_at,
        finished_at_us=finished_at,
        worker_ids=ids,
        errors=() if errors == "[]" else _errors(errors),
        return_json=return_value,
        attempts=attempts,
        max_attempts=max_attempts,
        owner=owner,
        unique_key=unique_key,
        cancel_requested=bool(cancel_requested),
        hooks=() if hooks is None else _hooks(hooks),
        put_backs=put_backs,
        first_put_back_at_us=first_put_back_at,
    )


class _Checker:
    """Check one row's values column by column, keeping what is wrong with each."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def bad(self, column: str, value: Any, rule: str) -> None:
        self.problems.append((column, f"column {column!r} holds {_shown(value)}, not {rule}"))

    def text(self, column: str, value: Any, default: str) -> str:
        if type(value) is str:
            return value
        self.bad(column, value, _TEXT)
        return default

    def optional_text(self, column: str, value: Any) -> str | None:
        if value is None or type(value) is str:
            return value
        self.bad(column, value, _OPTIONAL_TEXT)
        return None

    def integer(self, column: str, value: Any, default: int, *, least: int, rule: str) -> int:
        if type(value) is int and value >= least:
            return value
        self.bad(column, value, rule)
        return default

    def time(self, column: str, value: Any) -> int:
        if is_time(value):
            return int(value)
        self.bad(column, value, _TIME)
        return clamp_us(value) if type(value) is int else 0

    def optional_time(self, column: str, value: Any) -> int | None:
        if value is None or is_time(value):
            return value  # type: ignore[no-any-return]
        self.bad(column, value, _OPTIONAL_TIME)
        return clamp_us(value) if type(value) is int else None

    def json(self, column: str, value: Any, decode: Callable[[str], Any], rule: str) -> Any:
        try:
            return decode(value)
        except (TypeError, ValueError, RecursionError):
            self.bad(column, value, rule)
            return ()


def _checked_job(row: Sequence[Any]) -> JobRecord:
    """The record of any row: bad values replaced and described (the slow path)."""
    check = _Checker()
    state = row[6]
    if state not in _STATES:
        check.bad("state", state, "one of READY, RUNNING, FAILED, SUCCESSFUL")
    hooks = row[20]
    return JobRecord(
        job_id=check.text("job_id", row[0], repr(row[0])),
        task_path=check.text("task_path", row[1], ""),
        queue_name=check.text("queue_name", row[2], "default"),
        priority=check.integer("priority", row[3], 0, least=-(2**63), rule="a whole number"),
        args_json=check.text("args", row[4], "[]"),
        kwargs_json=check.text("kwargs", row[5], "{}"),
        state=_STATES.get(state, JobState.FAILED),
        enqueued_at_us=check.time("enqueued_at", row[7]),
        run_after_us=check.optional_time("run_after", row[8]),
        started_at_us=check.optional_time("started_at", row[9]),
        last_attempted_at_us=check.optional_time("last_attempted_at", row[10]),
        finished_at_us=check.optional_time("finished_at", row[11]),
        worker_ids=check.json("worker_ids", row[12], _worker_ids, "a JSON list of worker ids"),
        errors=check.json(
            "errors",
            row[13],
            _errors,
            'a JSON list of errors ({"exception_class_path": ..., "traceback": ...})',
        ),
        return_json=check.optional_text("return_value", row[14]),
        attempts=check.integer("attempts", row[15], 0, least=0, rule="a whole number >= 0"),
        max_attempts=check.integer("max_attempts", row[16], 1, least=1, rule="a whole number >= 1"),
        owner=check.optional_text("owner", row[17]),
        unique_key=check.optional_text("unique_key", row[18]),
        cancel_requested=bool(
            check.integer("cancel_requested", row[19], 0, least=0, rule="0 or 1")
        ),
        hooks=() if hooks is None else check.json("hooks", hooks, _hooks, "a JSON list of hooks"),
        put_backs=check.integer("put_backs", row[21], 0, least=0, rule="a whole number >= 0"),
        first_put_back_at_us=check.optional_time("first_put_back_at", row[22]),
        malformed=tuple(check.problems),
    )


def _shown(value: Any) -> str:
    """``value`` for an error message: its repr (cut short) and its SQLite type."""
    kind = {int: "integer", float: "real", str: "text", bytes: "blob"}.get(type(value), "NULL")
    text = repr(value)
    if len(text) > 60:
        text = text[:50] + "..." + text[-7:]
    return f"{text} ({kind})" if value is not None else "NULL"


def _json(text: Any) -> Any:
    if type(text) is not str:
        raise TypeError("not text")
    return json.loads(text)


def _worker_ids(text: Any) -> tuple[str, ...]:
    value = _json(text)
    if type(value) is not list or not all(type(item) is str for item in value):
        raise ValueError("not a list of worker ids")
    return tuple(value)


def _errors(text: Any) -> tuple[ErrorRecord, ...]:
    value = _json(text)
    if type(value) is not list:
        raise ValueError("not a list of errors")
    errors = []
    for item in value:
        if type(item) is not dict or item.keys() != _ERROR_KEYS:
            raise ValueError("not an error")
        path, traceback = item["exception_class_path"], item["traceback"]
        if type(path) is not str or type(traceback) is not str:
            raise ValueError("not an error")
        errors.append(ErrorRecord(exception_class_path=path, traceback=traceback))
    return tuple(errors)


def _hooks(text: Any) -> tuple[Hook, ...]:
    value = _json(text)
    if type(value) is not list:
        raise ValueError("not a list of hooks")
    hooks = []
    for item in value:
        if type(item) is not dict:
            raise ValueError("not a hook")
        hook = Hook(**item)  # TypeError for unknown or missing keys
        if not (
            hook.when in _HOOK_WHENS
            and type(hook.task_path) is str
            and type(hook.queue_name) is str
            and type(hook.priority) is int
            and type(hook.max_attempts) is int
            and hook.max_attempts > 0
        ):
            raise ValueError("not a hook")
        hooks.append(hook)
    return tuple(hooks)


def returned_text(raw: Any) -> str:
    """A text column read back as a blob (see ``sql``): its text, bytes that are not UTF-8
    replaced."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def returned_hooks(kind: Any, raw: Any) -> Any:
    """A ``hooks`` value read back as ``typeof`` and a blob (see ``sql``): None for NULL, the
    text for UTF-8 text, else the blob itself (which ``hooks_from_json`` refuses)."""
    if kind == "null":
        return None
    if kind == "text" and isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    return raw


def hooks_from_json(text: Any) -> tuple[Hook, ...] | None:
    """The hooks a ``hooks`` value holds; None if it is not a JSON list of hooks."""
    try:
        return _hooks(text)
    except (TypeError, ValueError, RecursionError):
        return None


def drop_bad_hooks(db: apsw.Connection, job_id: str, hooks_json: Any) -> None:
    """A finished job's ``hooks`` cannot be read: enqueue none, set it NULL, and say so in
    the job's errors (in the caller's transaction)."""
    text = (
        f"{MALFORMED_ERROR_PATH}: column 'hooks' of this task's row holds {_shown(hooks_json)}, "
        "not a JSON list of hooks (it was written by something other than litetasks), so no "
        "hook was enqueued when the task finished; it was set to NULL.\n"
    )
    db.execute(
        sql.DROP_HOOKS,
        {
            "job_id": job_id,
            "error": json.dumps({"exception_class_path": MALFORMED_ERROR_PATH, "traceback": text}),
        },
    )
    logger.error(
        "Task id=%s finished, but its hooks cannot be read (%s): none was enqueued",
        job_id,
        _shown(hooks_json),
    )


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


def with_problem(job: JobRecord, column: str, value: Any, rule: str = _TIME) -> JobRecord:
    """``job`` with one more bad value (a column the record does not hold, such as due_at)."""
    problem = (column, f"column {column!r} holds {_shown(value)}, not {rule}")
    job.malformed = (*job.malformed, problem)
    return job


def fail_malformed(
    db: apsw.Connection, job: JobRecord, seq: int, worker_id: str, now: int
) -> tuple[Hook, ...]:
    """Fail ``job`` (just claimed by ``worker_id``, in this transaction) for its bad values.

    Returns the hooks to enqueue for it (none when its hooks are among the bad values, or the
    row had to be set aside).
    """
    columns = sorted({column for column, _ in job.malformed})
    error = malformed_error(job)
    repairs = ",\n    ".join(dict.fromkeys(_REPAIRS[c][0] for c in columns if c in _REPAIRS))
    statement = sql.FAIL_MALFORMED.format(repairs=repairs + "," if repairs else "")
    params: dict[str, Any] = {
        "seq": seq,
        "worker_id": worker_id,
        "now": now,
        "keep": "errors" not in columns,
        "error": json.dumps(
            {"exception_class_path": error.exception_class_path, "traceback": error.traceback}
        ),
    }
    problems = "; ".join(problem for _, problem in job.malformed)
    failure: apsw.Error | None = None
    try:
        with db:  # a savepoint: a statement that fails half-way leaves nothing behind
            row: Any = db.execute(statement, params).fetchone()
    except (apsw.TooBigError, apsw.ConstraintError, apsw.SQLError) as exc:
        row, failure = None, exc
    if row is None:  # the error could not be written: only what cannot fail is
        db.execute(sql.SET_ASIDE, {"seq": seq})
        logger.error(
            "Task id=%s path=%s: its row holds values litetasks cannot read (%s), and writing "
            "the error failed too (%s): set aside as FAILED, unchanged otherwise",
            job.job_id,
            job.task_path,
            problems,
            failure or "no row matched",
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
