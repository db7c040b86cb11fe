"""What the operator's console reads: pages of jobs newest first, the ids a bulk action takes,
and deletion. apsw and SQL only; the admin pages (``litetasks/admin.py``) render it.

A page of the console must render fast with a million rows in the file, and the ``jobs`` table
has no index for the console's filters (each index would cost every enqueue and every
completion a page write). So every query here walks the table backwards along its rowid
(``seq``, the enqueue order) and reads at most ``SCAN_ROWS`` rows: a page that found fewer
matches than it wanted says where the next walk starts (``Page.next_before``) instead of
scanning on. A lookup by id uses the id's unique index.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from . import sql
from .handle import Handle
from .reading import get
from .records import JobRecord, JobState
from .rows import decode_job

__all__ = [
    "BULK_LIMIT",
    "SCAN_ROWS",
    "JobFilter",
    "Page",
    "delete",
    "matching_ids",
    "newest_seq",
    "page",
]

# The most rows one page of the console reads (about 10 ms on this machine's disk cache).
SCAN_ROWS = 100_000
# The most ids one bulk action takes; the confirmation page says when there are more.
BULK_LIMIT = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    """Which jobs a console page lists: every set field must match. Times in microseconds."""

    state: JobState | None = None
    queue_name: str | None = None
    task_path: str | None = None
    # On ``enqueued_at``: since <= enqueued_at < until.
    since_us: int | None = None
    until_us: int | None = None
    job_id: str | None = None
    # Text anywhere in the arguments or keyword arguments (as stored: JSON text).
    text: str | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        """The SQL condition (named parameters) and its bindings."""
        fields: dict[str, Any] = {
            "state": None if self.state is None else self.state.value,
            "queue_name": self.queue_name,
            "task_path": self.task_path,
            "since": self.since_us,
            "until": self.until_us,
            "job_id": self.job_id,
            "text": self.text,
        }
        conditions = {
            "state": "state = :state",
            "queue_name": "queue_name = :queue_name",
            "task_path": "task_path = :task_path",
            "since": "enqueued_at >= :since",
            "until": "enqueued_at < :until",
            "job_id": "job_id = :job_id",
            "text": "(instr(args, :text) > 0 OR instr(kwargs, :text) > 0)",
        }
        used = {name: value for name, value in fields.items() if value not in (None, "")}
        clause = " AND ".join(conditions[name] for name in used)
        return (f" AND {clause}" if clause else ""), used


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """One page of jobs, newest first, each with its ``seq``.

    ``next_before`` is the cursor of the following page (None: the walk reached the oldest
    row). ``is_partial``: the page stopped at its scan limit before it was full, so older
    matches may exist past ``next_before``.
    """

    jobs: list[tuple[int, JobRecord]]
    next_before: int | None
    is_partial: bool


_PAGE = """
SELECT seq, {columns}
FROM jobs
WHERE seq < :before AND seq >= :floor{where}
ORDER BY seq DESC
LIMIT :limit
"""
_SEQ_OF = "SELECT seq FROM jobs WHERE job_id = ?"
# Two subqueries: SQLite reads min() and max() of the rowid from the b-tree only when each is
# alone in its query (together, they scan the table).
_BOUNDS = "SELECT (SELECT min(seq) FROM jobs), (SELECT max(seq) FROM jobs)"


def newest_seq(handle: Handle) -> int:
    """Return the position of the newest row (0: none): a snapshot's upper bound."""
    with handle.translated:
        return int(handle.db.execute("SELECT coalesce(max(seq), 0) FROM jobs").get or 0)


def page(
    handle: Handle,
    job_filter: JobFilter,
    *,
    before: int | None = None,
    limit: int = 50,
    scan_rows: int = SCAN_ROWS,
) -> Page:
    """Return up to ``limit`` jobs matching ``job_filter`` older than ``before``, newest first.

    Reads at most ``scan_rows`` rows (see the module docstring).
    """
    if job_filter.job_id:
        return Page(jobs=_by_id(handle, job_filter), next_before=None, is_partial=False)
    with handle.translated:
        bounds: list[Any] = handle.db.execute(_BOUNDS).fetchall()
    oldest, newest = bounds[0]
    if oldest is None:
        return Page(jobs=[], next_before=None, is_partial=False)
    before = int(newest) + 1 if before is None else before
    floor = max(int(oldest), before - scan_rows)
    where, params = job_filter.where()
    params = {**params, "before": before, "floor": floor, "limit": limit}
    found = _rows(handle, where, params)
    if len(found) == limit:
        return Page(jobs=found, next_before=found[-1][0], is_partial=False)
    more = floor > int(oldest)
    return Page(jobs=found, next_before=floor if more else None, is_partial=more)


def _by_id(handle: Handle, job_filter: JobFilter) -> list[tuple[int, JobRecord]]:
    with handle.translated:
        seq = handle.db.execute(_SEQ_OF, (job_filter.job_id,)).get
    if seq is None:
        return []
    job = get(handle, str(job_filter.job_id))
    ok = job_filter.state in (None, job.state) and job_filter.queue_name in (None, job.queue_name)
    return [(int(seq), job)] if ok else []


def _rows(handle: Handle, where: str, params: dict[str, Any]) -> list[tuple[int, JobRecord]]:
    with handle.translated:
        try:
            statement = _PAGE.format(columns=sql.JOB_COLUMNS, where=where)
            rows: list[Any] = handle.db.execute(statement, params).fetchall()
        except UnicodeDecodeError:  # text that is not UTF-8, written by other code: one by one
            return _rows_one_by_one(handle, where, params)
    return [(int(row[0]), decode_job(row[1:])) for row in rows]


def _rows_one_by_one(
    handle: Handle, where: str, params: dict[str, Any]
) -> list[tuple[int, JobRecord]]:
    statement = _PAGE.format(columns="CAST(job_id AS BLOB)", where=where)
    rows: list[Any] = handle.db.execute(statement, params).fetchall()
    found = []
    for seq, raw_id in rows:
        job_id = bytes(raw_id).decode("utf-8", "replace")
        try:
            found.append((int(seq), get(handle, job_id)))
        except LookupError:  # an id that is not UTF-8 cannot be asked for by text
            continue
    return found


_MATCHING = """
SELECT job_id FROM jobs
WHERE seq <= :upto AND state = :state{where}{finished}
ORDER BY seq DESC
LIMIT :limit
"""


def matching_ids(
    handle: Handle,
    job_filter: JobFilter,
    *,
    state: JobState,
    upto_seq: int,
    finished_by_us: int | None = None,
    limit: int = BULK_LIMIT,
) -> list[str]:
    """Return the ids of jobs in ``state`` matching ``job_filter``, newest first: a bulk
    action's snapshot.

    Only rows enqueued at or before ``upto_seq`` count and, with ``finished_by_us``, only
    jobs that finished by then: what a page loaded at that moment showed. Scans the table.
    """
    narrowed = JobFilter(
        queue_name=job_filter.queue_name,
        task_path=job_filter.task_path,
        since_us=job_filter.since_us,
        until_us=job_filter.until_us,
        job_id=job_filter.job_id,
        text=job_filter.text,
    )
    where, params = narrowed.where()
    finished = "" if finished_by_us is None else " AND finished_at <= :finished_by"
    statement = _MATCHING.format(where=where, finished=finished)
    params = {**params, "upto": upto_seq, "state": state.value, "limit": limit}
    if finished_by_us is not None:
        params["finished_by"] = finished_by_us
    with handle.translated:
        rows: list[Any] = handle.db.execute(statement, params).fetchall()
    return [str(row[0]) for row in rows]


_DELETE = """
DELETE FROM jobs WHERE job_id = :job_id AND state <> 'RUNNING' RETURNING state
"""


def delete(handle: Handle, job_ids: Collection[str]) -> dict[str, str]:
    """Delete jobs in one transaction; return, per id, ``"deleted"``, ``"running"`` (left
    alone: cancel it first) or ``"not found"``.

    A READY job deleted never runs; its hooks are not enqueued (it did not finish).
    """
    results: dict[str, str] = {}
    with handle.write() as db:
        for job_id in job_ids:
            if db.execute(_DELETE, {"job_id": job_id}).fetchone() is not None:
                results[job_id] = "deleted"
            elif db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone():
                results[job_id] = "running"
            else:
                results[job_id] = "not found"
    return results
