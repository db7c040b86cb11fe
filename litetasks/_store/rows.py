"""Read stored job rows defensively: a row litetasks cannot read fails alone.

litetasks writes every row it reads, but now and then something else writes one behind its
back: another program, a bad migration, a hand edit. A value litetasks cannot read (JSON that
does not parse, text where a number belongs, a time outside the years a datetime holds) must not
crash a worker, abort the transaction that claims a batch (and every outcome recorded with it),
or stop the supervisor; and every other task must run.

``decode_job`` never raises: a value that is not what litetasks writes is replaced by a harmless
one and listed in ``JobRecord.malformed``. A claim then fails such a job at once, in the claiming
transaction (``malformed.fail_malformed``).

A row's values come in the order of ``sql.JOB_COLUMN_NAMES``; every position read here is
derived from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from .clock import EARLIEST_US, LATEST_US, clamp_us, is_time
from .records import ErrorRecord, Hook, JobRecord, JobState
from .sql import JOB_COLUMN_NAMES

__all__ = [
    "TIME_RULE",
    "bad_value",
    "decode_job",
    "decode_rows",
    "hooks_from_json",
    "returned_hooks",
    "returned_text",
    "shown",
]

_STATES = {state.value: state for state in JobState}
_HOOK_WHENS = ("success", "failure", "finish")
_ERROR_KEYS = {"exception_class_path", "traceback"}

# Rules, as "... not <rule>".
_TEXT = "text"
_OPTIONAL_TEXT = "text or NULL"
TIME_RULE = "a time in microseconds since the epoch from 0001-01-02 to 9999-12-30 UTC"
_OPTIONAL_TIME = TIME_RULE + ", or NULL"
_ERRORS_RULE = 'a JSON list of errors ({"exception_class_path": ..., "traceback": ...})'


def _columns(*names: str) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """Read the values of the columns ``names`` from a row, as a tuple (one C call)."""
    return itemgetter(*(JOB_COLUMN_NAMES.index(name) for name in names))


_COLUMN_COUNT = len(JOB_COLUMN_NAMES)
# The fast path's type checks, by kind of column.
_TEXTS = _columns("job_id", "task_path", "queue_name", "args", "kwargs", "worker_ids", "errors")
_INTEGERS = _columns(
    "priority", "attempts", "max_attempts", "put_backs", "cancel_requested", "enqueued_at"
)
_OPTIONAL_TEXTS = _columns("return_value", "owner", "unique_key")
_OPTIONAL_TIMES = _columns(
    "run_after", "started_at", "last_attempted_at", "finished_at", "first_put_back_at"
)
# The columns whose stored value the record holds decoded, at their positions; the record's
# fields are the columns in order (tests/store/test_rows.py checks both against the schema).
_STATE = JOB_COLUMN_NAMES.index("state")
_WORKER_IDS = JOB_COLUMN_NAMES.index("worker_ids")
_ERRORS = JOB_COLUMN_NAMES.index("errors")
_CANCEL_REQUESTED = JOB_COLUMN_NAMES.index("cancel_requested")
_HOOKS = JOB_COLUMN_NAMES.index("hooks")


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
    """``rows`` with text read from blobs (``sql.TAKEN_ROWS_RAW``, ``sql.JOB_ROW_RAW``: a first
    byte x'01' marks text, x'02' a blob): text that is not UTF-8 stays a blob, which
    ``decode_job`` reports as not text, and so does every blob."""
    return [tuple(_text_of(value) for value in row) for row in rows]


def _text_of(value: Any) -> Any:
    if type(value) is not bytes:
        return value
    if value[:1] == b"\x01":
        try:
            return value[1:].decode("utf-8")
        except UnicodeDecodeError:
            return value[1:]
    return value[1:] if value[:1] == b"\x02" else value


def _plain_job(row: Sequence[Any]) -> JobRecord | None:
    """The record of a row exactly as litetasks writes it; None (or an error) otherwise.

    The fast path, for every claimed job: type and range checks, JSON decoded when not empty.
    """
    if not _is_plain(row):
        return None
    values = list(row[:_COLUMN_COUNT])
    values[_STATE] = _STATES[values[_STATE]]
    worker_ids = values[_WORKER_IDS]
    if worker_ids == "[]":
        values[_WORKER_IDS] = ()
    elif (plain_ids := _plain_worker_ids(worker_ids)) is not None:
        values[_WORKER_IDS] = plain_ids
    else:
        decoded = json.loads(worker_ids)
        if type(decoded) is not list:
            return None
        for item in decoded:
            if type(item) is not str:
                return None
        values[_WORKER_IDS] = tuple(decoded)
    errors, hooks = values[_ERRORS], values[_HOOKS]
    values[_ERRORS] = () if errors == "[]" else _errors(errors)
    values[_CANCEL_REQUESTED] = bool(values[_CANCEL_REQUESTED])
    values[_HOOKS] = () if hooks is None else _hooks(hooks)
    return JobRecord(*values)


def _plain_worker_ids(text: str) -> tuple[str, ...] | None:
    """The worker ids of a ``worker_ids`` list as SQLite's ``json_insert`` writes it (compact:
    ``["a","b"]``), of ids without quotes, backslashes or unprintable characters, split
    without the JSON decoder (a third of its cost); None for any other text, which the
    decoder reads (or refuses) as before."""
    if (
        len(text) < 4
        or text[:2] != '["'
        or text[-2:] != '"]'
        or "\\" in text
        or not text.isprintable()
    ):
        return None
    ids = text[2:-2].split('","')
    for worker_id in ids:
        if '"' in worker_id:
            return None
    return tuple(ids)


def _is_plain(row: Sequence[Any], first: int = EARLIEST_US, last: int = LATEST_US) -> bool:
    """Whether every value of ``row`` has the type (and range) litetasks writes there.

    Chained ``type() is`` tests: several times as fast as a loop over the columns.
    """
    job_id, task_path, queue_name, args, kwargs, worker_ids, errors = _TEXTS(row)
    priority, attempts, max_attempts, put_backs, cancel, enqueued_at = _INTEGERS(row)
    returned, owner, unique_key = _OPTIONAL_TEXTS(row)
    run_after, started, attempted, finished, put_back = _OPTIONAL_TIMES(row)
    return (
        type(job_id) is type(task_path) is type(queue_name) is type(args) is type(kwargs) is str
        and type(worker_ids) is type(errors) is str
        and type(priority) is type(attempts) is type(max_attempts) is type(put_backs) is int
        and type(cancel) is type(enqueued_at) is int
        and max_attempts > 0
        and first <= enqueued_at <= last
        and (run_after is None or (type(run_after) is int and first <= run_after <= last))
        and (started is None or (type(started) is int and first <= started <= last))
        and (attempted is None or (type(attempted) is int and first <= attempted <= last))
        and (finished is None or (type(finished) is int and first <= finished <= last))
        and (put_back is None or (type(put_back) is int and first <= put_back <= last))
        and (returned is None or type(returned) is str)
        and (owner is None or type(owner) is str)
        and (unique_key is None or type(unique_key) is str)
    )


class _Checker:
    """Check one row's values column by column, keeping what is wrong with each."""

    def __init__(self, row: Sequence[Any]) -> None:
        self.values = dict(zip(JOB_COLUMN_NAMES, row, strict=False))
        self.problems: list[tuple[str, str]] = []

    def bad(self, column: str, value: Any, rule: str) -> None:
        self.problems.append((column, bad_value(column, value, rule)))

    def text(self, column: str, default: str) -> str:
        value = self.values[column]
        if type(value) is str:
            return value
        self.bad(column, value, _TEXT)
        return default

    def optional_text(self, column: str) -> str | None:
        value = self.values[column]
        if value is None or type(value) is str:
            return value
        self.bad(column, value, _OPTIONAL_TEXT)
        return None

    def integer(self, column: str, default: int, *, least: int, rule: str) -> int:
        value = self.values[column]
        if type(value) is int and value >= least:
            return value
        self.bad(column, value, rule)
        return default

    def time(self, column: str) -> int:
        value = self.values[column]
        if is_time(value):
            return int(value)
        self.bad(column, value, TIME_RULE)
        return clamp_us(value) if type(value) is int else 0

    def optional_time(self, column: str) -> int | None:
        value = self.values[column]
        if value is None or is_time(value):
            return value  # type: ignore[no-any-return]
        self.bad(column, value, _OPTIONAL_TIME)
        return clamp_us(value) if type(value) is int else None

    def json(self, column: str, decode: Callable[[str], Any], rule: str) -> Any:
        value = self.values[column]
        try:
            return decode(value)
        except (TypeError, ValueError, RecursionError):
            self.bad(column, value, rule)
            return ()

    def optional_json(self, column: str, decode: Callable[[str], Any], rule: str) -> Any:
        return () if self.values[column] is None else self.json(column, decode, rule)

    def state(self) -> JobState:
        value = self.values["state"]
        if value not in _STATES:
            self.bad("state", value, "one of READY, RUNNING, FAILED, SUCCESSFUL")
        return _STATES.get(value, JobState.FAILED)


def _checked_job(row: Sequence[Any]) -> JobRecord:
    """The record of any row: bad values replaced and described (the slow path)."""
    check = _Checker(row)
    return JobRecord(
        job_id=check.text("job_id", repr(check.values["job_id"])),
        task_path=check.text("task_path", ""),
        queue_name=check.text("queue_name", "default"),
        priority=check.integer("priority", 0, least=-(2**63), rule="a whole number"),
        args_json=check.text("args", "[]"),
        kwargs_json=check.text("kwargs", "{}"),
        state=check.state(),
        enqueued_at_us=check.time("enqueued_at"),
        run_after_us=check.optional_time("run_after"),
        started_at_us=check.optional_time("started_at"),
        last_attempted_at_us=check.optional_time("last_attempted_at"),
        finished_at_us=check.optional_time("finished_at"),
        worker_ids=check.json("worker_ids", _worker_ids, "a JSON list of worker ids"),
        errors=check.json("errors", _errors, _ERRORS_RULE),
        return_json=check.optional_text("return_value"),
        attempts=check.integer("attempts", 0, least=0, rule="a whole number >= 0"),
        max_attempts=check.integer("max_attempts", 1, least=1, rule="a whole number >= 1"),
        owner=check.optional_text("owner"),
        unique_key=check.optional_text("unique_key"),
        cancel_requested=bool(check.integer("cancel_requested", 0, least=0, rule="0 or 1")),
        hooks=check.optional_json("hooks", _hooks, "a JSON list of hooks"),
        put_backs=check.integer("put_backs", 0, least=0, rule="a whole number >= 0"),
        first_put_back_at_us=check.optional_time("first_put_back_at"),
        malformed=tuple(check.problems),
    )


def bad_value(column: str, value: Any, rule: str) -> str:
    """What is wrong with ``value`` in ``column`` (a problem of ``JobRecord.malformed``)."""
    return f"column {column!r} holds {shown(value)}, not {rule}"


def shown(value: Any) -> str:
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
