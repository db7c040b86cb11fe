"""``litetasks export`` / ``import``: tasks that have not started, as versioned JSON Lines.

The first line is a header, ``{"format": "litetasks-tasks", "version": 1}``; every other line
is one READY task with what a queue file holds of it (times as ISO 8601 in UTC, to the
microsecond), so that importing into a queue file is exact and another system can read it.
A row holding values litetasks cannot read (written by other code) is not exported: it stays as
it is, and the export says why (``unreadable``). A line that is not UTF-8, or holds text a queue
file cannot store, is refused on import, naming the line.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..exceptions import ConfigurationError
from . import sql
from .clock import us_from_datetime, utc_datetime
from .handle import Handle
from .rows import bad_value, decode_job
from .unreadable import Unreadable, read_rows, unreadable

__all__ = ["FORMAT", "VERSION", "Export", "export", "import_lines"]

FORMAT = "litetasks-tasks"
VERSION = 1

_EXPORT = """
SELECT {columns}
FROM jobs
WHERE state = 'READY'
  AND (:queues IS NULL OR queue_name IN (SELECT value FROM json_each(:queues)))
  AND (:tasks IS NULL OR task_path IN (SELECT value FROM json_each(:tasks)))
ORDER BY seq
"""
# OR IGNORE: a task whose id the file has, or whose unique key a READY or RUNNING task holds,
# is skipped (never changed), as ``litetasks merge`` does.
_IMPORT = """
INSERT OR IGNORE INTO jobs (
    job_id, task_path, queue_name, priority, args, kwargs, state, enqueued_at, run_after,
    due_at, started_at, last_attempted_at, worker_ids, errors, attempts, max_attempts, budget,
    unique_key, hooks)
VALUES (
    :id, :task, :queue, :priority, :args, :kwargs, 'READY', :enqueued_at, :run_after,
    coalesce(:run_after, :enqueued_at), :started_at, :last_attempted_at, :worker_ids, :errors,
    :attempts, :max_attempts, :budget, :unique_key, :hooks)
"""
_TIMES = ("enqueued_at", "run_after", "started_at", "last_attempted_at")
# The rows end in budget and seq; as is, and with every text as a blob for rows holding text that
# is not UTF-8 (``unreadable.read_rows``).
_COLUMN_NAMES = (*sql.JOB_COLUMN_NAMES, "budget")
_EXPORT_ROWS = (
    _EXPORT.format(columns=", ".join(_COLUMN_NAMES) + ", seq"),
    _EXPORT.format(columns=sql.as_blobs(_COLUMN_NAMES) + ", seq"),
)
_BUDGET, _SEQ = len(_COLUMN_NAMES) - 1, len(_COLUMN_NAMES)
_TASK_PATH = sql.JOB_COLUMN_NAMES.index("task_path")


@dataclass(frozen=True, slots=True)
class Export:
    """What an export holds: its lines (the header first), and the rows it left out."""

    lines: list[str]
    unreadable: list[Unreadable]


def _iso(us: int | None) -> str | None:
    return None if us is None else utc_datetime(us).isoformat()


def export(handle: Handle, queues: Collection[str] | None, tasks: Collection[str] | None) -> Export:
    """The header, then one line per READY task (of ``queues`` and ``tasks``, if given); a row
    that cannot be read is left out, as it is, in ``Export.unreadable``."""
    params = {
        "queues": None if queues is None else json.dumps(sorted(queues)),
        "tasks": None if tasks is None else json.dumps(sorted(tasks)),
    }
    with handle.translated:
        rows = read_rows(handle.db, *_EXPORT_ROWS, params)
    done = Export([json.dumps({"format": FORMAT, "version": VERSION})], [])
    for values in rows:
        job, budget = decode_job(values[:_BUDGET]), values[_BUDGET]
        extra = [] if type(budget) is int else [bad_value("budget", budget, "a whole number")]
        refused = unreadable(job, values[_SEQ], values[_TASK_PATH], extra)
        if refused is None:
            done.lines.append(_line(values))
        else:
            done.unreadable.append(refused)
    return done


def _line(values: Sequence[Any]) -> str:
    """The line of a row that reads cleanly (its JSON columns are JSON text)."""
    row = dict(zip(_COLUMN_NAMES, values, strict=False))
    return json.dumps(
        {
            "id": row["job_id"],
            "task": row["task_path"],
            "args": json.loads(row["args"]),
            "kwargs": json.loads(row["kwargs"]),
            "queue": row["queue_name"],
            "priority": row["priority"],
            **{name: _iso(row[name]) for name in _TIMES},
            "attempts": row["attempts"],
            "worker_ids": json.loads(row["worker_ids"]),
            "errors": json.loads(row["errors"]),
            "options": {
                "max_attempts": row["max_attempts"],
                "budget": row["budget"],
                "unique_key": row["unique_key"],
                "hooks": None if row["hooks"] is None else json.loads(row["hooks"]),
            },
        }
    )


def import_lines(handle: Handle, lines: Iterable[str | bytes], source: str) -> tuple[int, int]:
    """Add the tasks of an export to the file, all in one transaction; return (added,
    skipped: already there by id, or a live twin holds the unique key).

    ``lines`` come as text, or as bytes (UTF-8). Raises ``ConfigurationError`` naming the line
    of ``source`` that cannot be read; then nothing is added.
    """
    numbered = (
        (n, text) for n, line in enumerate(lines, 1) if (text := _decoded(line, source, n)).strip()
    )
    header = next(numbered, None)
    _check_header(header[1] if header else "", source)
    params = [_params(line, f"{source}, line {n}") for n, line in numbered]
    added = 0
    with handle.write() as db:
        for row in params:
            db.execute(_IMPORT, row)
            added += db.changes()
    if added:
        handle.ready()
    return added, len(params) - added


def _decoded(line: str | bytes, source: str, number: int) -> str:
    if isinstance(line, str):
        return line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{source}, line {number} is not UTF-8 (byte 0x{line[exc.start]:02x} at position "
            f"{exc.start}); nothing was imported. Fix or remove that line."
        ) from None


def _check_header(line: str, source: str) -> None:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ConfigurationError(
            f"{source} is not a litetasks export: its first line must be "
            f'{{"format": "{FORMAT}", "version": {VERSION}}}. Make it with litetasks export.'
        )
    if header.get("version") != VERSION:
        raise ConfigurationError(
            f"{source} is a litetasks export of version {header.get('version')!r}; this "
            f"litetasks reads version {VERSION}. Import it with the litetasks that made it."
        )


def _params(line: str, where: str) -> dict[str, Any]:
    try:
        task = json.loads(line)
        options = task["options"]
        params = {
            "id": _text(task["id"]),
            "task": _text(task["task"]),
            "queue": _text(task["queue"]),
            "priority": _int(task["priority"]),
            "args": _json(task["args"], list),
            "kwargs": _json(task["kwargs"], dict),
            "attempts": _int(task["attempts"]),
            "worker_ids": _json(task["worker_ids"], list),
            "errors": _json(task["errors"], list),
            "max_attempts": _int(options["max_attempts"]),
            "budget": _int(options["budget"]),
            "unique_key": None if options["unique_key"] is None else _text(options["unique_key"]),
            "hooks": None if options["hooks"] is None else _json(options["hooks"], list),
        }
        for name in _TIMES:
            value = task[name]
            params[name] = None if value is None else us_from_datetime(_moment(value))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"{where} is not a task litetasks export writes ({type(exc).__name__}: {exc}); "
            "nothing was imported. Fix or remove that line."
        ) from None
    if params["enqueued_at"] is None:
        raise ConfigurationError(f"{where}: enqueued_at is required; nothing was imported.")
    return params


def _moment(value: Any) -> datetime:
    moment = datetime.fromisoformat(_text(value))
    if moment.tzinfo is None:
        raise ValueError(f"time {value!r} has no UTC offset")
    return moment


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    value.encode("utf-8")  # a lone surrogate (JSON can escape one) is no text a file stores
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected a whole number, got {value!r}")
    return value


def _json(value: Any, kind: type) -> str:
    if not isinstance(value, kind):
        raise TypeError(f"expected a JSON {kind.__name__}, got {value!r}")
    return json.dumps(value)
