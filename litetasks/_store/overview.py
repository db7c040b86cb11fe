"""The numbers of the console's overview: jobs per queue and state, the oldest due READY job,
jobs finished per minute. apsw and SQL only.

READY and RUNNING jobs are counted exactly, through their partial indexes. Finished jobs have
no index (see console.py), so they are counted among the newest ``OVERVIEW_ROWS`` rows only,
and ``Counts.is_capped`` says when older rows were left out: the console then shows "n+".
Reading 50,000 rows takes 20-40 ms here (100 ms on this shared machine under load), which keeps
the overview within its 150 ms with a million rows in the file (benchmarks/console.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import console
from .console import JobFilter, Page
from .handle import Handle
from .records import JobState

__all__ = [
    "MINUTE_US",
    "OVERVIEW_ROWS",
    "ConsoleReads",
    "Counts",
    "counts",
    "finished_per_minute",
    "oldest_due",
]

MINUTE_US = 60_000_000
# The newest rows the overview counts finished jobs among (see the module docstring).
OVERVIEW_ROWS = 50_000

_READY = """
SELECT CAST(queue_name AS BLOB), count(*) FROM jobs INDEXED BY jobs_ready
WHERE state = 'READY' GROUP BY queue_name
"""
_RUNNING = """
SELECT CAST(queue_name AS BLOB), count(*) FROM jobs INDEXED BY jobs_running
WHERE state = 'RUNNING' GROUP BY queue_name
"""
# Finished jobs per queue, state and (between :since and :until) minute of finishing: the
# overview's counts and its chart in one walk over the newest rows.
_FINISHED = """
SELECT CAST(queue_name AS BLOB), state,
       CASE WHEN finished_at >= :since AND finished_at < :until
                 AND typeof(finished_at) = 'integer'
            THEN finished_at / 60000000 END,
       count(*)
FROM jobs
WHERE seq >= :floor AND state IN ('SUCCESSFUL', 'FAILED')
GROUP BY 1, 2, 3
"""
# Two subqueries: SQLite reads min() and max() of the rowid from the b-tree only when each is
# alone in its query (together, they scan the table).
_BOUNDS = "SELECT (SELECT min(seq) FROM jobs), (SELECT max(seq) FROM jobs)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """Jobs per ``(queue_name, state)``; finished ones among the newest rows only when
    ``is_capped`` (see the module docstring)."""

    by_queue: dict[tuple[str, JobState], int]
    is_capped: bool
    # (minute_start_us, successful, failed) per minute asked for, zeros included.
    per_minute: list[tuple[int, int, int]]

    def total(self, state: JobState) -> int:
        return sum(n for (_, s), n in self.by_queue.items() if s is state)


def _all(handle: Handle, statement: str, params: dict[str, Any] | None = None) -> list[Any]:
    rows: list[Any] = handle.db.execute(statement, params).fetchall()
    return rows


def _text(raw: Any) -> str:
    return bytes(raw).decode("utf-8", "replace")


def counts(
    handle: Handle, *, scan_rows: int = OVERVIEW_ROWS, since_us: int = 0, until_us: int = 0
) -> Counts:
    """Return the jobs per queue and state (READY and RUNNING exact, finished capped), and
    the finished ones per minute from ``since_us`` to ``until_us`` (none by default)."""
    by_queue: dict[tuple[str, JobState], int] = {}
    minutes: dict[int, list[int]] = {}
    with handle.translated:
        oldest, newest = _all(handle, _BOUNDS)[0]
        for state, statement in ((JobState.READY, _READY), (JobState.RUNNING, _RUNNING)):
            for queue, count in _all(handle, statement):
                by_queue[(_text(queue), state)] = int(count)
        floor = 0 if newest is None else max(int(oldest), int(newest) - scan_rows + 1)
        params = {"floor": floor, "since": since_us, "until": until_us}
        for queue, state, minute, count in _all(handle, _FINISHED, params):
            key = (_text(queue), JobState(state))
            by_queue[key] = by_queue.get(key, 0) + int(count)
            if minute is not None:
                tally = minutes.setdefault(int(minute), [0, 0])
                tally[state == JobState.FAILED.value] += int(count)
    first, last = since_us // MINUTE_US, (until_us - 1) // MINUTE_US
    per_minute = [(m * MINUTE_US, *minutes.get(m, (0, 0))) for m in range(first, last + 1)]
    is_capped = newest is not None and floor > int(oldest)
    return Counts(by_queue=by_queue, is_capped=is_capped, per_minute=per_minute)


_OLDEST_DUE = """
SELECT CAST(queue_name AS BLOB), min(due_at) FROM jobs INDEXED BY jobs_ready
WHERE state = 'READY' AND due_at <= :now AND typeof(due_at) = 'integer'
GROUP BY queue_name
"""


def oldest_due(handle: Handle) -> dict[str, int]:
    """Return, per queue, the due time of its oldest due READY job (the queue's latency is
    now minus it); queues with no due READY job are left out."""
    with handle.translated:
        rows = _all(handle, _OLDEST_DUE, {"now": handle.now()})
    return {_text(queue): int(due) for queue, due in rows}


def finished_per_minute(
    handle: Handle, *, since_us: int, until_us: int, scan_rows: int = OVERVIEW_ROWS
) -> list[tuple[int, int, int]]:
    """Return ``(minute_start_us, successful, failed)`` for every minute from ``since_us``
    to ``until_us`` (zeros included), counted from the ``finished_at`` of the newest
    ``scan_rows`` rows."""
    found = counts(handle, scan_rows=scan_rows, since_us=since_us, until_us=until_us)
    return found.per_minute


class ConsoleReads:
    """The console's queries on one connection (``Store.console``)."""

    def __init__(self, handle: Handle) -> None:
        self._handle = handle

    def page(self, job_filter: JobFilter, *, before: int | None = None, limit: int = 50) -> Page:
        """One page of jobs newest first; see ``console.page``."""
        return console.page(self._handle, job_filter, before=before, limit=limit)

    def newest_seq(self) -> int:
        """The position of the newest row: the upper bound of a bulk action's snapshot."""
        return console.newest_seq(self._handle)

    def matching_ids(
        self,
        job_filter: JobFilter,
        *,
        state: JobState,
        upto_seq: int,
        finished_by_us: int | None = None,
    ) -> list[str]:
        """A bulk action's snapshot; see ``console.matching_ids``."""
        return console.matching_ids(
            self._handle,
            job_filter,
            state=state,
            upto_seq=upto_seq,
            finished_by_us=finished_by_us,
        )

    def counts(self, *, since_us: int = 0, until_us: int = 0) -> Counts:
        """Jobs per queue and state, and finished per minute; see ``counts``."""
        return counts(self._handle, since_us=since_us, until_us=until_us)

    def oldest_due(self) -> dict[str, int]:
        """Per queue, the due time of its oldest due READY job."""
        return oldest_due(self._handle)

    def finished_per_minute(self, *, since_us: int, until_us: int) -> list[tuple[int, int, int]]:
        """Jobs finished per minute; see ``finished_per_minute``."""
        return finished_per_minute(self._handle, since_us=since_us, until_us=until_us)
