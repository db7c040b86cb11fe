"""``litetasks export`` / ``import``: tasks that have not started, as versioned JSON Lines.

The first line is a header, ``{"format": "litetasks-tasks", "version": 1}``; every other line
is one READY task with what a queue file holds of it (times as ISO 8601 in UTC, to the
microsecond), so that importing into a queue file is exact and another system can read it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from typing import Any

from ..exceptions import ConfigurationError
from . import sql
from .clock import us_from_datetime, utc_datetime
from .handle import Handle

__all__ = ["FORMAT", "VERSION", "export_lines", "import_lines"]

FORMAT = "litetasks-tasks"
VERSION = 1

_EXPORT = f"""
SELECT {sql.JOB_COLUMNS}, budget
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


def _iso(us: int | None) -> str | None:
    return None if us is None else utc_datetime(us).isoformat()


def export_lines(
    handle: Handle, queues: Collection[str] | None, tasks: Collection[str] | None
) -> Iterator[str]:
    """The header, then one line per READY task (of ``queues`` and ``tasks``, if given)."""
    params = {
        "queues": None if queues is None else json.dumps(sorted(queues)),
        "tasks": None if tasks is None else json.dumps(sorted(tasks)),
    }
    yield json.dumps({"format": FORMAT, "version": VERSION})
    with handle.translated:
        rows: list[Any] = handle.db.execute(_EXPORT, params).fetchall()
    for values in rows:
        row = dict(zip((*sql.JOB_COLUMN_NAMES, "budget"), values, strict=True))
        yield json.dumps(
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


def import_lines(handle: Handle, lines: Iterable[str], source: str) -> tuple[int, int]:
    """Add the tasks of an export to the file, all in one transaction; return (added,
    skipped: already there by id, or a live twin holds the unique key).

    Raises ``ConfigurationError`` naming the line of ``source`` that cannot be read; then
    nothing is added.
    """
    numbered = ((n, line) for n, line in enumerate(lines, 1) if line.strip())
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
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected a whole number, got {value!r}")
    return value


def _json(value: Any, kind: type) -> str:
    if not isinstance(value, kind):
        raise TypeError(f"expected a JSON {kind.__name__}, got {value!r}")
    return json.dumps(value)
