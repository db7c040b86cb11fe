"""Counters of finished tasks kept in the queue file, for metrics and the admin's charts.

Every task that finishes (SUCCESSFUL or FAILED, by a worker's outcome, a cancel or a recovery)
is counted in ``finished_stats`` in the transaction that finishes it: one statement per
transaction, not per task (``count_finished``), which reads the finished rows by id and adds
them up: per (queue, task path, state) into a bucket of the duration histogram and one of the
queue-wait histogram, and per (minute, state) for the charts. So the counts survive pruning and
restarts, and any process reads the same numbers.

The histogram rows are bounded (queues x task paths x states x buckets, whatever the age of
the file): a scrape reads only them. Minute rows older than ``KEEP_MINUTES_S`` are dropped
(``fold``, hourly): at most two a minute for a day.

The duration of a finished task is its last attempt's (``finished_at - last_attempted_at``);
its queue wait is how long that attempt waited once due (``last_attempted_at - due_at``). A
task that never started (cancelled while READY) has neither: bucket ``NO_ATTEMPT``.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import apsw

from .handle import Handle

__all__ = [
    "BUCKETS_S",
    "NO_ATTEMPT",
    "Counters",
    "FinishedStats",
    "LiveCounts",
    "count_finished",
    "finished_per_minute",
    "finished_stats",
    "fold",
    "live_counts",
]

# Upper bounds of the histogram buckets, in seconds (Prometheus' ``le``); index
# ``len(BUCKETS_S)`` is +Inf. From 5 ms (a fast task) to an hour (a report, a long wait).
BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0
)  # fmt: skip
NO_ATTEMPT = -1
MINUTE_US = 60_000_000
KEEP_MINUTES_S = 24 * 3600
FOLD_EVERY_US = 3600 * 1_000_000
# When each handle last folded (stats belong to the file; this only spaces the folds out).
_folded_at: weakref.WeakKeyDictionary[Handle, int] = weakref.WeakKeyDictionary()


def _bucket(expression: str) -> str:
    """SQL for the bucket index of ``expression`` (microseconds; NULL: ``NO_ATTEMPT``)."""
    cases = " ".join(
        f"WHEN {expression} <= {round(bound * 1_000_000)} THEN {index}"
        for index, bound in enumerate(BUCKETS_S)
    )
    return f"(CASE WHEN {expression} IS NULL THEN {NO_ATTEMPT} {cases} ELSE {len(BUCKETS_S)} END)"


_TIMES_OK = (
    "typeof(finished_at) = 'integer' AND (last_attempted_at IS NULL"
    " OR (typeof(last_attempted_at) = 'integer' AND typeof(due_at) = 'integer'))"
)
# Adds the rows :ids that are finished (the caller's transaction finished them) to the counts:
# a bucket of each histogram per (queue, task path, state), and the minute's tasks per state.
# Each time is worked out once (MATERIALIZED: SQLite would otherwise copy its expression into
# every WHEN of the buckets). Rows whose times are not integers (written by other code) are
# counted, in no bucket and no minute.
_COUNT = f"""
WITH finished AS MATERIALIZED (
    SELECT CAST(queue_name AS TEXT) AS queue_name, CAST(task_path AS TEXT) AS task_path, state,
           CASE WHEN {_TIMES_OK} THEN finished_at / {MINUTE_US} * {MINUTE_US} ELSE 0 END
               AS minute,
           CASE WHEN {_TIMES_OK} THEN max(0, finished_at - last_attempted_at) END AS duration,
           CASE WHEN {_TIMES_OK} THEN max(0, last_attempted_at - due_at) END AS wait
    FROM jobs
    WHERE job_id IN (SELECT value FROM json_each(:ids)) AND state IN ('SUCCESSFUL', 'FAILED')
)
INSERT INTO finished_stats (kind, minute, queue_name, task_path, state, le, tasks, total_us)
SELECT 'duration', 0, queue_name, task_path, state, {_bucket("duration")}, count(*),
       coalesce(sum(duration), 0)
FROM finished WHERE true GROUP BY 3, 4, 5, 6
UNION ALL
SELECT 'wait', 0, queue_name, task_path, state, {_bucket("wait")}, count(*),
       coalesce(sum(wait), 0)
FROM finished WHERE true GROUP BY 3, 4, 5, 6
UNION ALL
SELECT 'minute', minute, '', '', state, 0, count(*), 0
FROM finished WHERE minute > 0 GROUP BY 2, 5
ON CONFLICT (kind, minute, queue_name, task_path, state, le) DO UPDATE
SET tasks = tasks + excluded.tasks, total_us = total_us + excluded.total_us
"""
_FOLD = "DELETE FROM finished_stats WHERE kind = 'minute' AND minute < :before"

_PER_MINUTE = """
SELECT minute, sum(CASE WHEN state = 'SUCCESSFUL' THEN tasks ELSE 0 END),
       sum(CASE WHEN state = 'FAILED' THEN tasks ELSE 0 END)
FROM finished_stats WHERE kind = 'minute' AND minute >= :since
GROUP BY minute ORDER BY minute
"""
# Every task counted has one 'duration' row (le -1 when it never started): the totals.
_TOTALS = """
SELECT kind, queue_name, task_path, state, le, tasks, total_us
FROM finished_stats WHERE kind IN ('duration', 'wait')
"""


def count_finished(handle: Handle, db: apsw.Connection, job_ids: Collection[str]) -> None:
    """Count the jobs ``job_ids`` that are finished, in the caller's transaction (the one
    that finished them): one statement for all of them. Once an hour per handle, the
    minutes older than a day are folded too (``fold``)."""
    if not job_ids:
        return
    db.execute(_COUNT, {"ids": json.dumps(list(job_ids))})
    now = handle.now()
    if now - _folded_at.get(handle, 0) >= FOLD_EVERY_US:
        fold(db, now - KEEP_MINUTES_S * 1_000_000)
        _folded_at[handle] = now


def fold(db: apsw.Connection, before_us: int) -> None:
    """Forget the per-minute counts of minutes before ``before_us``, in the caller's
    transaction (the totals and histograms are kept apart: they never change by it)."""
    db.execute(_FOLD, {"before": before_us})


def finished_per_minute(handle: Handle, since_us: int) -> list[tuple[int, int, int]]:
    """``(minute, successful, failed)`` per minute from ``since_us`` on, oldest first; a minute
    is the microseconds of its start, and minutes when nothing finished are left out. Only
    the last day is kept by the minute (``fold``)."""
    since = max(1, since_us // MINUTE_US * MINUTE_US)
    with handle.translated:
        rows: list[Any] = handle.db.execute(_PER_MINUTE, {"since": since}).fetchall()
    return [(int(minute), int(ok), int(failed)) for minute, ok, failed in rows]


@dataclass
class Histogram:
    """Counts per bucket (``BUCKETS_S``, then +Inf; not cumulative) and the sum in µs."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))
    sum_us: int = 0


@dataclass
class FinishedStats:
    """What ``finished_stats`` returns: every count since the file was made."""

    # (queue, task path, state) -> tasks finished
    totals: dict[tuple[str, str, str], int] = field(default_factory=dict)
    # (queue, task path) -> histogram of durations / of queue waits (tasks that ran)
    durations: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    waits: dict[tuple[str, str], Histogram] = field(default_factory=dict)


def finished_stats(handle: Handle) -> FinishedStats:
    """Every count of finished tasks: totals and the two histograms."""
    with handle.translated:
        rows: list[Any] = handle.db.execute(_TOTALS).fetchall()
    return _summed(rows)


def _summed(rows: Iterable[Any]) -> FinishedStats:
    stats = FinishedStats()
    for kind, queue, task, state, le, tasks, total_us in rows:
        key = (str(queue), str(task))
        if kind == "duration":
            stats.totals[(*key, str(state))] = stats.totals.get((*key, str(state)), 0) + tasks
        if le == NO_ATTEMPT:
            continue
        histograms = stats.durations if kind == "duration" else stats.waits
        histogram = histograms.setdefault(key, Histogram())
        histogram.counts[le] += tasks
        histogram.sum_us += total_us
    return stats


# READY and RUNNING jobs from their partial indexes: a scrape reads no finished row, however
# many the file holds. Names as bytes: text that is not UTF-8 (other code's) cannot fail it.
_READY = """
SELECT CAST(queue_name AS BLOB), count(*),
       min(CASE WHEN typeof(due_at) = 'integer' AND due_at <= :now THEN due_at END)
FROM jobs INDEXED BY jobs_ready WHERE state = 'READY' GROUP BY queue_name
"""
_RUNNING = """
SELECT CAST(queue_name AS BLOB), CAST(owner AS BLOB), count(*)
FROM jobs INDEXED BY jobs_running WHERE state = 'RUNNING' GROUP BY queue_name, owner
"""


@dataclass
class LiveCounts:
    """The jobs waiting and running now, per queue."""

    ready: dict[str, int] = field(default_factory=dict)
    # queue -> the earliest due time of a READY job that is due (µs), if any
    oldest_due_us: dict[str, int] = field(default_factory=dict)
    # (queue, owner) -> RUNNING jobs
    running: dict[tuple[str, str], int] = field(default_factory=dict)


def live_counts(handle: Handle) -> LiveCounts:
    """Count READY and RUNNING jobs per queue (and owner), reading only their indexes."""
    with handle.translated:
        ready: list[Any] = handle.db.execute(_READY, {"now": handle.now()}).fetchall()
        running: list[Any] = handle.db.execute(_RUNNING).fetchall()
    counts = LiveCounts()
    for raw_queue, count, oldest in ready:
        queue = _text(raw_queue)
        counts.ready[queue] = counts.ready.get(queue, 0) + count
        if oldest is not None:
            counts.oldest_due_us[queue] = min(oldest, counts.oldest_due_us.get(queue, oldest))
    for raw_queue, owner, count in running:
        key = (_text(raw_queue), _text(owner))
        counts.running[key] = counts.running.get(key, 0) + count
    return counts


def _text(raw: bytes | None) -> str:
    return "" if raw is None else bytes(raw).decode("utf-8", "replace")


class Counters:
    """The counters of one queue file (``Store.counters``): finished tasks, kept in the file,
    and the live READY and RUNNING jobs."""

    def __init__(self, handle: Handle) -> None:
        self._handle = handle

    def finished_stats(self) -> FinishedStats:
        """Return the counts of finished tasks kept in the file (they outlast pruning): per
        queue, task path and state, and the histograms of durations and queue waits."""
        return finished_stats(self._handle)

    def live_counts(self) -> LiveCounts:
        """Return the READY and RUNNING jobs per queue, and the oldest due READY one; reads
        only their indexes, so it costs the same with a million finished rows."""
        return live_counts(self._handle)

    def finished_per_minute(self, since_us: int) -> list[tuple[int, int, int]]:
        """Return ``(minute, successful, failed)`` per minute since ``since_us`` (the last day
        at most); see ``finished_per_minute``."""
        return finished_per_minute(self._handle, since_us)
