"""The queue file: enqueue, claim, record, recover. apsw and SQL only; no Django, no sleeping.

A ``Store`` wraps one apsw connection and belongs to one thread (open one per thread; opening is
cheap). Every write is one ``BEGIN IMMEDIATE`` transaction; the claim is one ``UPDATE … RETURNING``
statement, so two workers can never claim the same job.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw

from . import sql
from .connection import connection_busy_timeout, immediate, open_connection, translated_errors
from .exceptions import JobNotFound
from .records import ErrorRecord, JobRecord, JobState, NewJob, Outcome, WorkerRecord
from .schema import migrate

__all__ = ["Clock", "Store", "wall_clock_us"]

Clock = Callable[[], int]


def wall_clock_us() -> int:
    """Return the current time in integer microseconds since the Unix epoch."""
    return time.time_ns() // 1000


class Store:
    """One connection to one queue file. Not thread-safe: use one ``Store`` per thread."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        clock: Clock = wall_clock_us,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._now = clock
        # Called after every commit that makes a job READY (the backend rings its doorbell
        # here), so sleeping workers claim it at once.
        self._on_ready = on_ready or _nothing
        self._db = open_connection(
            self.path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
        )
        with self._translated():
            migrate(self._db)

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- producers ---------------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob]) -> int:
        """Insert ``jobs`` READY in one transaction (all or nothing); return ``enqueued_at``."""
        now = self._now()
        rows = [
            {
                "job_id": job.job_id,
                "task_path": job.task_path,
                "queue_name": job.queue_name,
                "priority": job.priority,
                "args": job.args_json,
                "kwargs": job.kwargs_json,
                "run_after": job.run_after_us,
                "max_attempts": job.max_attempts,
                "now": now,
            }
            for job in jobs
        ]
        if len(rows) == 1:
            # One INSERT is atomic by itself and takes the write lock through the busy handler
            # (it is not a read that upgrades to a write): no BEGIN/COMMIT round trips needed.
            with self._translated():
                self._db.execute(sql.INSERT, rows[0])
        else:
            with self._write() as db:
                db.executemany(sql.INSERT, rows)
        self._on_ready()
        return now

    # -- consumers ---------------------------------------------------------------------------

    def claim(
        self, worker_id: str, *, queues: Collection[str] | None = None, limit: int = 1
    ) -> list[JobRecord]:
        """Atomically move up to ``limit`` due READY jobs to RUNNING under ``worker_id``.

        Jobs come back in claim order: priority descending, then due time, then enqueue order.
        ``queues=None`` serves every queue.
        """
        return self.record_and_claim((), worker_id, queues=queues, limit=limit)[1]

    def record(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Settle claimed attempts in one transaction; return, per outcome, whether it counted.

        An outcome whose job is no longer RUNNING under that worker and attempt (it was
        recovered as lost meanwhile) changes nothing and yields False. A failed attempt goes
        back to READY at its ``retry_at_us`` when that is set and attempts remain.
        """
        return self.record_and_claim(outcomes, "", limit=0)[0]

    def record_and_claim(
        self,
        outcomes: Sequence[Outcome],
        worker_id: str,
        *,
        queues: Collection[str] | None = None,
        limit: int = 1,
    ) -> tuple[list[bool], list[JobRecord]]:
        """``record(outcomes)`` then ``claim(...)``, in one transaction (one commit, one fsync).

        A worker that finished a task usually wants the next one: doing both in one
        transaction halves the commits per task.
        """
        with self._write() as db:
            settled = [self._settle(db, outcome) for outcome in outcomes]
            rows = self._claim(db, worker_id, queues, limit) if limit > 0 else []
        if any(o.retry_at_us is not None for o in outcomes):
            self._on_ready()  # a retry is READY again: waiting workers re-plan their sleep
        rows.sort(key=lambda row: (-row[3], row[-2], row[-1]))  # priority, due_at, seq
        return settled, [_job_from_row(row) for row in rows]

    def _claim(
        self,
        db: apsw.Connection,
        worker_id: str,
        queues: Collection[str] | None,
        limit: int,
    ) -> list[Any]:
        if isinstance(queues, str):
            raise TypeError(f"queues must be a collection of names, not the string {queues!r}.")
        params: dict[str, Any] = {"worker_id": worker_id, "now": self._now(), "limit": limit}
        if queues is None:
            statement = sql.CLAIM_ANY
        elif len(queues) == 1:
            statement = sql.CLAIM_ONE_QUEUE
            params["queue"] = next(iter(queues))
        else:
            statement = sql.CLAIM_QUEUES
            params["queues"] = json.dumps(sorted(queues))
        return db.execute(statement, params).fetchall()

    def _settle(self, db: apsw.Connection, outcome: Outcome) -> bool:
        params: dict[str, Any] = {
            "job_id": outcome.job_id,
            "worker_id": outcome.worker_id,
            "attempt": outcome.attempt,
            "started_at": outcome.started_at_us,
            "finished_at": outcome.finished_at_us,
        }
        if outcome.error is None:
            params["return_value"] = outcome.return_json
            db.execute(sql.COMPLETE, params)
        else:
            params["error"] = _error_json(outcome.error)
            params["retry_at"] = outcome.retry_at_us
            db.execute(sql.FAIL, params)
        return db.changes() == 1

    def release(self, worker_id: str, job_ids: Collection[str] | None = None) -> list[str]:
        """Put ``worker_id``'s RUNNING jobs back to READY without counting the attempt.

        Used when a worker stops gracefully before its tasks finish. Returns the released ids.
        """
        ids = None if job_ids is None else json.dumps(list(job_ids))
        with self._write() as db:
            rows = db.execute(sql.RELEASE, {"worker_id": worker_id, "job_ids": ids}).fetchall()
        if rows:
            self._on_ready()
        return [str(row[0]) for row in rows]

    # -- workers -----------------------------------------------------------------------------

    def register_worker(self, worker: WorkerRecord) -> None:
        """Add (or replace) a worker row; its heartbeat starts now."""
        with self._write() as db:
            db.execute(
                """
                INSERT OR REPLACE INTO workers
                    (worker_id, pid, host, boot_id, proc_start, queues, started_at, heartbeat_at)
                VALUES (:worker_id, :pid, :host, :boot_id, :proc_start, :queues, :started_at, :now)
                """,
                {
                    "worker_id": worker.worker_id,
                    "pid": worker.pid,
                    "host": worker.host,
                    "boot_id": worker.boot_id,
                    "proc_start": worker.proc_start,
                    "queues": None if worker.queues is None else json.dumps(list(worker.queues)),
                    "started_at": worker.started_at_us,
                    "now": self._now(),
                },
            )

    def heartbeat(self, worker_id: str) -> bool:
        """Refresh ``worker_id``'s heartbeat; False if its row is gone (it was declared lost)."""
        with self._write() as db:
            db.execute(
                "UPDATE workers SET heartbeat_at = :now WHERE worker_id = :worker_id",
                {"now": self._now(), "worker_id": worker_id},
            )
            return db.changes() == 1

    def unregister_worker(self, worker_id: str) -> list[str]:
        """Release ``worker_id``'s RUNNING jobs and delete its row; return the released ids."""
        released = self.release(worker_id)
        with self._write() as db:
            db.execute("DELETE FROM workers WHERE worker_id = :worker_id", {"worker_id": worker_id})
        return released

    def recover_lost(
        self,
        *,
        stale_before_us: int,
        error: ErrorRecord,
        known_dead: Collection[str] = (),
        known_alive: Collection[str] = (),
    ) -> list[tuple[str, JobState]]:
        """Settle RUNNING jobs whose worker is lost; return ``(job_id, new_state)`` pairs.

        A worker is lost when it is in ``known_dead``, or when it is not in ``known_alive`` and
        has no row with a heartbeat at or after ``stale_before_us``. Its jobs go back to READY
        when attempts remain, else to FAILED; either way ``error`` is appended to their errors.
        Lost workers' rows are deleted in the same transaction.
        """
        params: dict[str, Any] = {
            "dead": json.dumps(list(known_dead)),
            "alive": json.dumps(list(known_alive)),
            "stale_before": stale_before_us,
            "now": self._now(),
            "error": _error_json(error),
        }
        with self._write() as db:
            rows = db.execute(sql.RECOVER, params).fetchall()
            del params["now"], params["error"]
            db.execute(sql.FORGET_LOST_WORKERS, params)
        if any(row[1] == JobState.READY.value for row in rows):
            self._on_ready()
        return [(str(row[0]), JobState(row[1])) for row in rows]

    def get_workers(self) -> list[WorkerRecord]:
        """Return every registered worker with the ids of the jobs it is running."""
        with self._translated():
            jobs: list[Any] = self._db.execute(
                "SELECT owner, job_id FROM jobs WHERE state = 'RUNNING' ORDER BY seq"
            ).fetchall()
            rows: list[Any] = self._db.execute(
                "SELECT worker_id, pid, host, boot_id, proc_start, queues, started_at, heartbeat_at"
                " FROM workers ORDER BY started_at"
            ).fetchall()
        running: dict[str, list[str]] = {}
        for owner, job_id in jobs:
            running.setdefault(str(owner), []).append(str(job_id))
        workers = []
        for row in rows:
            worker_id, pid, host, boot_id, proc_start, queues, started_at, heartbeat_at = row
            workers.append(
                WorkerRecord(
                    worker_id=str(worker_id),
                    pid=int(pid),
                    host=str(host),
                    boot_id=str(boot_id),
                    proc_start=int(proc_start),
                    queues=None if queues is None else tuple(json.loads(str(queues))),
                    started_at_us=int(started_at),
                    heartbeat_at_us=int(heartbeat_at),
                    current_job_ids=tuple(running.get(str(worker_id), ())),
                )
            )
        return workers

    def get_running_owners(self) -> set[str]:
        """Return the worker ids that own at least one RUNNING job."""
        with self._translated():
            rows = self._db.execute(
                "SELECT DISTINCT owner FROM jobs WHERE state = 'RUNNING'"
            ).fetchall()
        return {str(row[0]) for row in rows}

    # -- reading -----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        """Return the job ``job_id``; raise ``JobNotFound`` if there is none."""
        with self._translated():
            row = self._db.execute(
                f"SELECT {sql.JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return _job_from_row(row)

    def counts(self) -> dict[tuple[str, JobState], int]:
        """Return the number of jobs per ``(queue_name, state)``."""
        with self._translated():
            rows: list[Any] = self._db.execute(
                "SELECT queue_name, state, count(*) FROM jobs GROUP BY queue_name, state"
            ).fetchall()
        return {(str(q), JobState(s)): int(n) for q, s, n in rows}

    def next_due_at(self, queues: Collection[str] | None = None) -> int | None:
        """Return the earliest ``due_at`` of a READY job in ``queues`` (None: no READY job)."""
        sql = "SELECT min(due_at) FROM jobs WHERE state = 'READY'"
        params: tuple[str, ...] = ()
        if queues is not None:
            sql += " AND queue_name IN (SELECT value FROM json_each(?))"
            params = (json.dumps(list(queues)),)
        with self._translated():
            row = self._db.execute(sql, params).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def max_row_bytes(self) -> int:
        """Return the most bytes one row may take (SQLite's ``SQLITE_LIMIT_LENGTH``)."""
        return int(self._db.limit(apsw.SQLITE_LIMIT_LENGTH))

    def now_us(self) -> int:
        """Return the store clock's current time (microseconds)."""
        return self._now()

    # -- maintenance -------------------------------------------------------------------------

    def checkpoint(self) -> tuple[int, int]:
        """Checkpoint the WAL and truncate it; return ``(wal_frames, frames_checkpointed)``.

        When a reader holds an old snapshot the checkpoint cannot finish; ``wal_frames`` larger
        than ``frames_checkpointed`` says so. It never waits: a TRUNCATE checkpoint that waited
        for readers would hold off every writer meanwhile.
        """
        self._db.set_busy_timeout(0)
        try:
            with self._translated():
                row: Any = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            connection_busy_timeout(self._db, self.busy_timeout_ms)
        _busy, log, done = row  # all copied but not truncated: the WAL is reused, not grown
        return int(log), int(done)

    def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check`` and return its first line (``ok`` when healthy)."""
        with self._translated():
            return str(self._db.execute("PRAGMA integrity_check").get)

    # -- plumbing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[apsw.Connection]:
        with self._translated(), immediate(self._db) as db:
            yield db

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        """Turn apsw errors into ``StoreError``s that say what happened and what to do."""
        return translated_errors(self.path, self.busy_timeout_ms)


def _nothing() -> None:
    pass


def _error_json(error: ErrorRecord) -> str:
    return json.dumps(
        {"exception_class_path": error.exception_class_path, "traceback": error.traceback}
    )


def _job_from_row(row: Any) -> JobRecord:
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
    ) = row[:18]
    return JobRecord(
        job_id=str(job_id),
        task_path=str(task_path),
        queue_name=str(queue_name),
        priority=int(priority),
        args_json=str(args),
        kwargs_json=str(kwargs),
        state=JobState(state),
        enqueued_at_us=int(enqueued_at),
        run_after_us=None if run_after is None else int(run_after),
        started_at_us=None if started_at is None else int(started_at),
        last_attempted_at_us=(None if last_attempted_at is None else int(last_attempted_at)),
        finished_at_us=None if finished_at is None else int(finished_at),
        worker_ids=tuple(json.loads(str(worker_ids))),
        errors=tuple(ErrorRecord(**e) for e in json.loads(str(errors))),
        return_json=None if return_value is None else str(return_value),
        attempts=int(attempts),
        max_attempts=int(max_attempts),
        owner=None if owner is None else str(owner),
    )
