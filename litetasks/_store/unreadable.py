"""Rows a forward or an export leaves as they are: they hold values litetasks cannot read.

Something other than litetasks wrote them (another program, a migration, a hand edit). A claim
fails such a row (``malformed``); a forward or an export only reads rows to move them, so it
refuses the row instead, with the reason, and writes nothing to it: nothing stored is lost, and
every other row moves. Text that is not UTF-8 cannot even be read as text (apsw raises), so
those rows are read again with every text as a blob (``sql.as_blobs``, ``rows.decode_rows``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apsw

from .records import JobRecord
from .rows import bad_value, decode_rows, shown

__all__ = ["Unreadable", "read_rows", "reason", "unreadable"]


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A row left as it is, and why."""

    seq: int
    job_id: str  # as ``rows.decode_job`` reads it (the repr of bytes that are not text)
    task_path: str  # for messages: bytes that are not UTF-8 replaced
    reason: str


def read_rows(
    db: apsw.Connection, statement: str, raw: str, params: Mapping[str, Any]
) -> list[Sequence[Any]]:
    """The rows of ``statement``; those of ``raw`` (the same with ``sql.as_blobs``), decoded by
    ``rows.decode_rows``, when some text is not UTF-8."""
    try:
        rows: list[Any] = db.execute(statement, params).fetchall()
    except UnicodeDecodeError:
        return decode_rows(db.execute(raw, params).fetchall())
    return rows


def unreadable(
    job: JobRecord, seq: int, task_path: Any, extra: Sequence[str] = ()
) -> Unreadable | None:
    """Row ``seq`` (read as ``job``; ``task_path`` its value as read) as a row to leave as it
    is; None when it reads cleanly.

    Beyond ``JobRecord.malformed``: arguments that are not JSON of their kind (a task could not
    take them), and ``extra``, problems of columns the record does not hold.
    """
    problems = [problem for _, problem in job.malformed]
    bad = {column for column, _ in job.malformed}
    for column, text, kind, rule in (
        ("args", job.args_json, list, "a JSON list"),
        ("kwargs", job.kwargs_json, dict, "a JSON object"),
    ):
        if column not in bad and not _is_json(text, kind):
            problems.append(bad_value(column, text, rule))
    problems += extra
    if not problems:
        return None
    return Unreadable(
        seq=seq,
        job_id=job.job_id,
        task_path=_text(task_path),
        reason=reason(problems),
    )


def reason(problems: Sequence[str]) -> str:
    """Why a row is left as it is, from its ``problems`` (each as ``rows.bad_value`` says it)."""
    return (
        "its row holds values litetasks did not write and cannot read: "
        + "; ".join(problems)
        + ". Something other than litetasks wrote it: mend the row, or delete it."
    )


def _text(value: Any) -> str:
    if type(value) is bytes:
        return value.decode("utf-8", "replace")
    return value if type(value) is str else shown(value)


def _is_json(text: str, kind: type) -> bool:
    try:
        return type(json.loads(text)) is kind
    except (ValueError, RecursionError):
        return False
