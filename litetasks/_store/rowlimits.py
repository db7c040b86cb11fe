"""Claim around rows too big to claim: fail each such job by itself, run the others.

Claiming a job adds a worker id, an owner and times to its row. A row already near SQLite's
length limit (``SQLITE_LIMIT_LENGTH``) cannot take them, and the claim's UPDATE fails with
``TooBigError``; as one statement claims a batch, one such row would fail every claim of
every worker, forever. Enqueue keeps a margin free in each row (``ROW_MARGIN_BYTES``), so such
a row comes from elsewhere: a limit lowered since, a file written by other code, many retries.

When a batch claim fails so, the store calls ``claim_one_by_one`` in a new transaction: it
claims one job at a time, each in a savepoint, and fails the job a claim cannot grow. Used only
after such a failure; the claim stays one statement otherwise.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import apsw

from . import sql_bad_rows
from .rows import returned_hooks, returned_text

__all__ = ["ROW_MARGIN_BYTES", "TOO_BIG_ERROR_PATH", "TooBigToClaim", "claim_one_by_one"]

logger = logging.getLogger(__name__)

TOO_BIG_ERROR_PATH = "litetasks.exceptions.JobTooBig"
# Room a row keeps beside its arguments for what running the task adds to it (worker ids,
# times, errors, which are cut to fit) and for a return value checked against the rest: the
# backend refuses arguments, and the worker return values, that would leave less.
ROW_MARGIN_BYTES = 64 * 1024


class TooBigToClaim(Exception):
    """A batch claim failed because a row could not grow; claim one by one instead."""


def claim_one_by_one(
    db: apsw.Connection,
    claim_sql: str,
    due_sql: str,
    params: dict[str, Any],
    max_row_bytes: int,
) -> tuple[list[Any], list[tuple[str, Any]]]:
    """Claim up to ``params["limit"]`` jobs in claim order, failing the ones too big to claim.

    Runs inside the caller's write transaction. Returns the claimed rows and, per failed job,
    ``(job_id, hooks)`` (``hooks`` as ``rows.returned_hooks`` gives it).
    """
    rows: list[Any] = []
    failed: list[tuple[str, Any]] = []
    one = {**params, "limit": 1}
    while len(rows) < params["limit"]:
        try:
            # A savepoint: an UPDATE that fails half-way leaves the rows it changed changed
            # when SQLite saw no need for a statement journal.
            with db:
                claimed = db.execute(claim_sql, one).fetchall()
        except apsw.TooBigError:
            due: Any = db.execute(due_sql, one).fetchone()
            failed.append(_fail(db, int(due[0]), params["now"], max_row_bytes))
            continue
        if not claimed:
            break
        rows.extend(claimed)
    return rows, failed


def _fail(db: apsw.Connection, seq: int, now: int, max_row_bytes: int) -> tuple[str, Any]:
    """FAILED without running, with an error that fits: see ``sql_bad_rows.FAIL_TOO_BIG``."""
    sizes: Any = db.execute(sql_bad_rows.TOO_BIG_SIZES, (seq,)).fetchone()
    args_bytes, earlier = sizes
    for keep_errors in (True, False):
        error = _error_json(int(args_bytes), max_row_bytes, 0 if keep_errors else int(earlier))
        params: dict[str, Any] = {"seq": seq, "now": now, "error": error, "keep": keep_errors}
        try:
            with db:
                row: Any = db.execute(sql_bad_rows.FAIL_TOO_BIG, params).fetchone()
                job_id, task_path = returned_text(row[0]), returned_text(row[1])
                hooks = returned_hooks(row[2], row[3])
            break
        except apsw.TooBigError:
            if not keep_errors or not earlier:
                raise
    logger.error(
        "Task id=%s path=%s is too big to claim (%d bytes of arguments; rows hold at most %d "
        "bytes): FAILED without running",
        job_id,
        task_path,
        args_bytes,
        max_row_bytes,
    )
    return job_id, hooks


def _error_json(args_bytes: int, max_row_bytes: int, dropped_errors: int) -> str:
    dropped = f", and so were the errors of its {dropped_errors} earlier attempt(s)"
    text = (
        f"{TOO_BIG_ERROR_PATH}: this task's row in the queue file has no room left for what a "
        f"worker adds to it when claiming it (its arguments take {args_bytes:,} bytes; SQLite "
        f"rows hold at most {max_row_bytes:,}), so it never ran. Its arguments were removed "
        f"from the row to make room for this error{dropped if dropped_errors else ''}. Keep "
        "large data elsewhere (a file, the app database) and pass its id or path instead.\n"
    )
    return json.dumps({"exception_class_path": TOO_BIG_ERROR_PATH, "traceback": text})
