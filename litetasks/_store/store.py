"""The queue file: enqueue, claim, record, recover. apsw and SQL only; no Django, no sleeping.

A ``Store`` wraps one apsw connection and belongs to one thread (open one per thread; opening is
cheap). Every write is one ``BEGIN IMMEDIATE`` transaction; the claim is one ``UPDATE … RETURNING``
statement, so two workers can never claim the same job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import secrets
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw

from ..exceptions import JobNotFound
from . import sql
from .connection import (
    FileIds,
    MovedCheck,
    TranslatedErrors,
    connection_busy_timeout,
    create_private_file,
    file_ids,
    immediate,
    no_checkpoint_on_close,
    open_connection,
)
from .faults import ACTIVE as FAULTS
from .faults import fault
from .records import (
    EARLIEST_US,
    LATEST_US,
    ErrorRecord,
    Hook,
    JobRecord,
    JobState,
    NewJob,
    Outcome,
    WorkerRecord,
)
from .rowlimits import TooBigToClaim, claim_one_by_one
from .rows import (
    decode_job,
    decode_rows,
    drop_bad_hooks,
    fail_malformed,
    hooks_from_json,
    is_time,
    returned_hooks,
    returned_text,
    with_problem,
)
from .schema import migrate

__all__ = ["CancelResult", "Clock", "Store", "new_job_id", "new_job_ids", "wall_clock_us"]

Clock = Callable[[], int]


def wall_clock_us() -> int:
    """Return the current time in integer microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def new_job_id() -> str:
    """Return a new job (result) id: 32 hex digits, time-ordered so the id index appends.

    12 digits of milliseconds since the epoch, then 20 random ones (80 bits).
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def new_job_ids(count: int) -> list[str]:
    """Return ``count`` new job ids, as ``new_job_id()`` makes them, six times as fast.

    For bulk enqueues: one read of the clock and of the random source for all of them.
    """
    millis = f"{time.time_ns() // 1_000_000:012x}"
    random = secrets.token_hex(10 * count)
    return [millis + random[i : i + 20] for i in range(0, 20 * count, 20)]


class CancelResult(str, enum.Enum):
    """What ``Store.cancel`` did to one job."""

    CANCELLED = "cancelled"  # it was READY: now FAILED, it never runs
    CANCELLING = "cancelling"  # it is RUNNING: its worker interrupts it and records it FAILED
    FINISHED = "finished"  # already SUCCESSFUL or FAILED: unchanged
    NOT_FOUND = "not found"

    def __str__(self) -> str:
        return self.value


CANCELLED_ERROR = ErrorRecord(
    exception_class_path="litetasks.exceptions.TaskCancelled",
    traceback="litetasks.exceptions.TaskCancelled: cancelled before it ran.\n",
)
CANCELLED_LOST_ERROR = ErrorRecord(
    exception_class_path="litetasks.exceptions.TaskCancelled",
    traceback=(
        "litetasks.exceptions.TaskCancelled: cancelled while it ran; its worker stopped before "
        "recording an outcome.\n"
    ),
)


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
        self._translation = TranslatedErrors(self.path, busy_timeout_ms)
        self._now = clock
        # Called after every commit that makes a job READY (the backend rings its doorbell
        # here), so sleeping workers claim it at once.
        self._on_ready = on_ready or _nothing
        self._hooked = False  # the current write transaction enqueued a hook
        self._db = open_connection(
            self.path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
        )
        # The file SQLite opened: ``path`` with every symlink followed.
        self.real_path = Path(self._db.filename)
        self.has_moved = MovedCheck(self._db)
        with self._translated():
            migrate(self._db)  # a read in WAL mode: the -wal and -shm are open from here on
        self.opened_files: FileIds = file_ids(self.path, self.real_path)

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
        rows = [_insert_params(job, now) for job in jobs]
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

    def enqueue_unique(self, jobs: Sequence[NewJob]) -> tuple[int, list[JobRecord | None]]:
        """Insert ``jobs`` in one transaction, skipping twins of live jobs; return ``enqueued_at``.

        A job whose ``unique_key`` is the key of a READY or RUNNING job (already stored, or
        earlier in ``jobs``) is not inserted; the list says, per job, which live job it
        duplicates (``None``: it was inserted).
        """
        now = self._now()
        existing: list[JobRecord | None] = []
        inserted = False
        with self._write() as db:
            for job in jobs:
                twin = None
                if job.unique_key is not None:
                    twin = db.execute(
                        f"SELECT {sql.JOB_COLUMNS} FROM jobs WHERE unique_key = ?"
                        " AND state IN ('READY', 'RUNNING')",
                        (job.unique_key,),
                    ).fetchone()
                if twin is not None:
                    existing.append(decode_job(twin))
                    continue
                self._insert(db, job, now)
                existing.append(None)
                inserted = True
        if inserted:
            self._on_ready()
        return now, existing

    def enqueue_slot(self, name: str, slot_us: int, job: NewJob) -> bool:
        """Enqueue ``job`` as the slot ``slot_us`` of the periodic schedule ``name``, once.

        False (nothing written) when that slot or a later one was already enqueued, by this
        process or any other on the same file; also False, with the slot recorded as done,
        when ``job`` is unique and its twin is READY or RUNNING (the slot is skipped).
        A recorded slot that is not a time a queue file holds (written by other code) is
        replaced.
        """
        if not EARLIEST_US <= slot_us <= LATEST_US:
            raise ValueError(_out_of_range("slot_us", slot_us))
        with self._write() as db:
            last = db.execute(sql.SCHEDULE_LAST_SLOT, {"name": name}).fetchone()
            if last is not None and _slot_or_none(last[0]) is not None and last[0] >= slot_us:
                return False
            now = self._now()
            try:
                self._insert(db, job, now)
                job_id: str | None = job.job_id
            except apsw.ConstraintError:  # a unique task whose twin is READY or RUNNING
                job_id = None
            db.execute(
                sql.SCHEDULE_SET_SLOT,
                {"name": name, "slot": slot_us, "job_id": job_id, "now": now},
            )
        if job_id is None:
            return False
        self._on_ready()
        return True

    def schedules(self) -> dict[str, tuple[int, str | None]]:
        """Return, per periodic schedule name, its last enqueued slot and that job's id.

        A slot that is not a time a queue file holds (written by other code) is left out, as
        if the schedule had never run: its next slot replaces it.
        """
        with self._translated():
            rows: list[Any] = self._db.execute(
                "SELECT name, last_slot, last_job_id FROM schedules"
            ).fetchall()
        return {
            str(n): (slot, None if j is None else str(j))
            for n, s, j in rows
            if (slot := _slot_or_none(s)) is not None
        }

    def _insert(self, db: apsw.Connection, job: NewJob, now: int) -> None:
        db.execute(sql.INSERT, _insert_params(job, now))

    def withdraw(self, job_ids: Collection[str]) -> list[str]:
        """Delete the jobs ``job_ids`` that are still READY; return the ids deleted.

        For a producer that finds it wrote into a file that was moved or deleted meanwhile:
        a job a worker has taken already stays (it is in the file the pool served).
        """
        with self._write() as db:
            rows = db.execute(
                "DELETE FROM jobs WHERE state = 'READY'"
                " AND job_id IN (SELECT value FROM json_each(?)) RETURNING job_id",
                (json.dumps(list(job_ids)),),
            ).fetchall()
        return [str(row[0]) for row in rows]

    # -- consumers ---------------------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        *,
        queues: Collection[str] | None = None,
        limit: int = 1,
        skip: Collection[str] = (),
    ) -> list[JobRecord]:
        """Atomically move up to ``limit`` due READY jobs to RUNNING under ``worker_id``.

        Jobs come back in claim order: priority descending, then due time, then enqueue order.
        ``queues=None`` serves every queue. Jobs whose task path is in ``skip`` are left.
        """
        return self.record_and_claim((), worker_id, queues=queues, limit=limit, skip=skip)[1]

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
        skip: Collection[str] = (),
    ) -> tuple[list[bool], list[JobRecord]]:
        """``record(outcomes)`` then ``claim(...)``, in one transaction (one commit, one fsync).

        A worker that finished a task usually wants the next one: doing both in one
        transaction halves the commits per task.
        """
        if FAULTS and limit > 0:
            fault("claim.before_begin", self._db)
        try:
            settled, rows = self._record_and_claim(outcomes, worker_id, queues, limit, skip)
        except TooBigToClaim:  # rolled back; once more, failing the rows that cannot grow
            settled, rows = self._record_and_claim(outcomes, worker_id, queues, limit, skip, True)
        if self._hooked or any(
            o.retry_at_us is not None or o.put_back_due_us is not None for o in outcomes
        ):
            self._on_ready()  # a retry, a hook or a put-back is READY: sleepers re-plan
        return settled, rows

    def _record_and_claim(
        self,
        outcomes: Sequence[Outcome],
        worker_id: str,
        queues: Collection[str] | None,
        limit: int,
        skip: Collection[str],
        one_by_one: bool = False,
    ) -> tuple[list[bool], list[JobRecord]]:
        with self._write() as db:
            self._hooked = False
            settled = self._settle_all(db, outcomes)
            jobs: list[JobRecord] = []
            while len(jobs) < limit:
                rows = self._claim(db, worker_id, queues, limit - len(jobs), one_by_one, skip)
                claimed = self._claimed(db, rows, worker_id) if rows else []
                jobs += claimed  # each round takes what sorts after the rounds before it
                if len(claimed) == len(rows):  # none failed: nothing more is due, or enough
                    break
            if FAULTS and outcomes:
                fault("record.before_commit", db)
            if FAULTS and jobs:
                fault("claim.after_update", db)
        return settled, jobs

    def _claimed(self, db: apsw.Connection, rows: list[Any], worker_id: str) -> list[JobRecord]:
        """The jobs of claimed ``rows`` in claim order (priority, due time, enqueue order).

        A job whose row holds values litetasks cannot read fails here, in the claiming
        transaction, and is not returned (see rows.py); the others are claimed as usual.
        """
        keyed: list[tuple[int, int, int, JobRecord]] = []
        for row in rows:
            job = decode_job(row)
            due_at, seq = row[-2], row[-1]
            if not (type(due_at) is int and EARLIEST_US <= due_at <= LATEST_US):
                job = with_problem(job, "due_at", due_at)
            if job.malformed:
                hooks = fail_malformed(db, job, seq, worker_id, self._now())
                self._enqueue_hooks(db, job.job_id, JobState.FAILED, hooks)
                continue
            keyed.append((-job.priority, due_at, seq, job))  # seq is unique: jobs never compare
        keyed.sort()
        return [job for *_, job in keyed]

    def _claim(
        self,
        db: apsw.Connection,
        worker_id: str,
        queues: Collection[str] | None,
        limit: int,
        one_by_one: bool = False,
        skip: Collection[str] = (),
    ) -> list[Any]:
        if isinstance(queues, str):
            raise TypeError(f"queues must be a collection of names, not the string {queues!r}.")
        params: dict[str, Any] = {"worker_id": worker_id, "now": self._now(), "limit": limit}
        if queues is None:
            served = "any"
        elif len(queues) == 1:
            served = "one"
            params["queue"] = next(iter(queues))
        else:
            served = "some"
            params["queues"] = json.dumps(sorted(queues))
        if skip:
            params["skip"] = json.dumps(sorted(skip))
        pick, statement, due = sql.CLAIMS[served, bool(skip)]
        if not one_by_one:
            try:
                return _take(db, pick, params)
            except apsw.TooBigError:
                raise TooBigToClaim from None
        rows, failed = claim_one_by_one(db, statement, due, params, self.max_row_bytes())
        for job_id, hooks in failed:
            if hooks is not None:
                self._enqueue_hooks(db, job_id, JobState.FAILED, hooks)
        return rows

    def _settle_all(self, db: apsw.Connection, outcomes: Sequence[Outcome]) -> list[bool]:
        """Settle ``outcomes`` in outcome order: a group of successes in one statement.

        The group is the successes known to have no hooks (``Outcome.has_hooks``), with short
        return values; if it does not settle in full (a job was recovered as lost meanwhile),
        it is undone and every outcome is settled one by one, which says which ones counted.
        One statement for the group costs about half of one per outcome.
        """
        batch: dict[str, Outcome] = {}
        for outcome in outcomes:
            if (
                outcome.error is None
                and outcome.has_hooks is False
                and outcome.return_json is not None
                and len(outcome.return_json) <= _BATCH_VALUE_MAX
                and outcome.job_id not in batch
            ):
                batch[outcome.job_id] = outcome
        if len(batch) < 2 or not self._settled_in_full(db, list(batch.values())):
            return [self._settle(db, outcome) for outcome in outcomes]
        return [
            True if batch.get(outcome.job_id) is outcome else self._settle(db, outcome)
            for outcome in outcomes
        ]

    def _settled_in_full(self, db: apsw.Connection, batch: list[Outcome]) -> bool:
        items = [
            [o.job_id, o.worker_id, o.attempt, o.started_at_us, o.finished_at_us, o.return_json]
            for o in batch
        ]
        db.execute("SAVEPOINT settle_batch")
        db.execute(sql.COMPLETE_MANY, {"batch": json.dumps(items)})
        if db.changes() == len(batch):
            db.execute("RELEASE settle_batch")
            return True
        db.execute("ROLLBACK TO settle_batch")
        db.execute("RELEASE settle_batch")
        return False

    def _settle(self, db: apsw.Connection, outcome: Outcome) -> bool:
        params: dict[str, Any] = {
            "job_id": outcome.job_id,
            "worker_id": outcome.worker_id,
            "attempt": outcome.attempt,
            "started_at": outcome.started_at_us,
            "finished_at": outcome.finished_at_us,
        }
        if outcome.put_back_due_us is not None:
            params["due_at"] = outcome.put_back_due_us
            del params["started_at"]
            return db.execute(sql.PUT_BACK, params).fetchone() is not None
        if outcome.error is None:
            params["return_value"] = outcome.return_json
            row = db.execute(sql.COMPLETE, params).fetchone()
        else:
            params["error"] = _error_json(outcome.error)
            params["retry_at"] = outcome.retry_at_us
            row = db.execute(sql.FAIL, params).fetchone()
        if row is None:
            return False
        hooks = returned_hooks(row[1], row[2])
        if hooks is not None:
            self._enqueue_hooks(db, outcome.job_id, JobState(row[0]), hooks)
        return True

    def _enqueue_hooks(
        self,
        db: apsw.Connection,
        job_id: str,
        state: JobState,
        hooks_json: Any,
    ) -> None:
        """Insert the hooks of ``job_id`` that fire on ``state``, in the caller's transaction.

        ``hooks_json`` is the row's ``hooks`` value, or the hooks already decoded (a tuple).
        """
        if not state.is_finished:
            return
        hooks = hooks_json if isinstance(hooks_json, tuple) else hooks_from_json(hooks_json)
        if hooks is None:  # written by other code: none is enqueued, and the row says so
            drop_bad_hooks(db, job_id, hooks_json)
            return
        now = self._now()
        for hook in hooks:
            if hook.fires_on(state):
                self._insert(
                    db,
                    NewJob(
                        job_id=new_job_id(),
                        task_path=hook.task_path,
                        queue_name=hook.queue_name,
                        priority=hook.priority,
                        args_json=json.dumps([job_id]),
                        max_attempts=hook.max_attempts,
                    ),
                    now,
                )
                self._hooked = True

    def release(self, worker_id: str, job_ids: Collection[str] | None = None) -> list[str]:
        """Put ``worker_id``'s RUNNING jobs back to READY without counting the attempt.

        Used when a worker stops gracefully before its tasks finish. Returns the released ids.
        """
        ids = None if job_ids is None else json.dumps(list(job_ids))
        with self._write() as db:
            rows = db.execute(sql.RELEASE, {"worker_id": worker_id, "job_ids": ids}).fetchall()
        if rows:
            self._on_ready()
        return [returned_text(row[0]) for row in rows]

    # -- workers -----------------------------------------------------------------------------

    def register_worker(self, worker: WorkerRecord) -> None:
        """Add (or replace) a worker row; its heartbeat starts now."""
        with self._write() as db:
            db.execute(
                """
                INSERT OR REPLACE INTO workers
                    (worker_id, pid, host, boot_id, proc_start, pid_namespace, queues,
                     started_at, heartbeat_at)
                VALUES (:worker_id, :pid, :host, :boot_id, :proc_start, :pid_namespace, :queues,
                        :started_at, :now)
                """,
                {
                    "worker_id": worker.worker_id,
                    "pid": worker.pid,
                    "host": worker.host,
                    "boot_id": worker.boot_id,
                    "proc_start": worker.proc_start,
                    "pid_namespace": worker.pid_namespace or None,
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
        params["cancel_error"] = _error_json(CANCELLED_LOST_ERROR)
        with self._write() as db:
            self._hooked = False
            rows = db.execute(sql.RECOVER, params).fetchall()
            for raw_id, state, kind, raw_hooks in rows:
                hooks = returned_hooks(kind, raw_hooks)
                if hooks is not None:
                    self._enqueue_hooks(db, returned_text(raw_id), JobState(state), hooks)
            del params["now"], params["error"], params["cancel_error"]
            db.execute(sql.FORGET_LOST_WORKERS, params)
        if self._hooked or any(row[1] == JobState.READY.value for row in rows):
            self._on_ready()
        return [(returned_text(row[0]), JobState(row[1])) for row in rows]

    # -- operator actions ----------------------------------------------------------------------

    def cancel(
        self, job_ids: Collection[str], *, error: ErrorRecord = CANCELLED_ERROR
    ) -> dict[str, CancelResult]:
        """Cancel jobs in one transaction: a READY job is FAILED with ``error`` and never runs;
        a RUNNING one is flagged, and its worker interrupts it (see ``cancel_requested``)."""
        results: dict[str, CancelResult] = {}
        params: dict[str, Any] = {"now": self._now(), "error": _error_json(error)}
        with self._write() as db:
            self._hooked = False
            for job_id in job_ids:
                row = db.execute(sql.CANCEL_READY, {**params, "job_id": job_id}).fetchone()
                if row is not None:
                    hooks = returned_hooks(row[1], row[2])
                    if hooks is not None:
                        self._enqueue_hooks(db, job_id, JobState(row[0]), hooks)
                    results[job_id] = CancelResult.CANCELLED
                    continue
                db.execute(sql.CANCEL_RUNNING, {"job_id": job_id})
                if db.changes():
                    results[job_id] = CancelResult.CANCELLING
                    continue
                found = _exists(db, job_id)
                results[job_id] = CancelResult.FINISHED if found else CancelResult.NOT_FOUND
        if self._hooked:
            self._on_ready()
        return results

    def cancel_requested(self, worker_id: str) -> list[str]:
        """Return the ids of ``worker_id``'s RUNNING jobs that someone asked to cancel."""
        with self._translated():
            rows = self._db.execute(sql.CANCEL_REQUESTED, {"worker_id": worker_id}).fetchall()
        return [str(row[0]) for row in rows]

    def retry(self, job_ids: Collection[str]) -> dict[str, str]:
        """Make FAILED jobs READY again with a fresh attempt budget, in one transaction.

        Returns, per id, ``"retried"``, ``"not failed"`` (READY, RUNNING or SUCCESSFUL: left
        alone), ``"duplicate"`` (a unique job whose twin is READY or RUNNING) or ``"not found"``.
        """
        results: dict[str, str] = {}
        now = self._now()
        with self._write() as db:
            for job_id in job_ids:
                try:
                    db.execute(sql.RETRY, {"job_id": job_id, "now": now})
                except apsw.ConstraintError:
                    results[job_id] = "duplicate"
                    continue
                if db.changes():
                    results[job_id] = "retried"
                    continue
                results[job_id] = "not failed" if _exists(db, job_id) else "not found"
        if "retried" in results.values():
            self._on_ready()
        return results

    def failed_job_ids(self, *, queues: Collection[str] | None = None) -> list[str]:
        """Return the ids of every FAILED job (of ``queues``), oldest first."""
        where, params = _in_queues(queues)
        with self._translated():
            rows = self._db.execute(
                f"SELECT job_id FROM jobs WHERE state = 'FAILED'{where} ORDER BY seq", params
            ).fetchall()
        return [str(row[0]) for row in rows]

    def prune(
        self,
        *,
        finished_before_us: int,
        states: Collection[JobState] = (JobState.SUCCESSFUL, JobState.FAILED),
        batch: int = 1000,
    ) -> int:
        """Delete jobs in ``states`` that finished before ``finished_before_us``; return how many.

        Works through the table ``batch`` rows per transaction, oldest first (``prune_step``),
        so writers wait at most one short transaction. READY and RUNNING jobs are never deleted.
        """
        deleted = 0
        after: int | None = 0
        while after is not None:
            count, after = self.prune_step(
                finished_before_us=finished_before_us, states=states, after=after, batch=batch
            )
            deleted += count
        return deleted

    def prune_step(
        self,
        *,
        finished_before_us: int,
        states: Collection[JobState] = (JobState.SUCCESSFUL, JobState.FAILED),
        after: int = 0,
        batch: int = 1000,
    ) -> tuple[int, int | None]:
        """Prune the ``batch`` rows after ``after`` (a position; 0: the start) in one transaction.

        Returns how many were deleted and where the next step starts, or None when the walk is
        over: at the end of the table, or at a window holding jobs enqueued after the cut-off
        (they cannot have finished before it).
        """
        names = [JobState(s) for s in states]
        if not all(state.is_finished for state in names):
            raise ValueError("Only SUCCESSFUL and FAILED jobs can be pruned.")
        if batch < 1:
            raise ValueError(f"batch must be at least 1 (got {batch!r}).")
        params: dict[str, Any] = {
            "after": after,
            "batch": batch,
            "states": json.dumps([state.value for state in names]),
            "before": finished_before_us,
        }
        with self._write() as db:
            upto, newest = db.execute(sql.PRUNE_WINDOW_END, params).fetchone() or (None, None)
            if upto is None:
                return 0, None
            db.execute(sql.PRUNE, {**params, "upto": upto})
            deleted = db.changes()
        done = newest is not None and int(newest) >= finished_before_us
        return deleted, None if done else int(upto)

    def get_workers(self) -> list[WorkerRecord]:
        """Return every registered worker with the ids of the jobs it is running."""
        with self._translated():
            jobs: list[Any] = self._db.execute(sql.RUNNING_JOBS).fetchall()
            rows: list[Any] = self._db.execute(
                "SELECT worker_id, pid, host, boot_id, proc_start, pid_namespace, queues,"
                " started_at, heartbeat_at FROM workers ORDER BY started_at"
            ).fetchall()
        running: dict[str, list[str]] = {}
        for owner, job_id in jobs:
            running.setdefault(str(owner), []).append(str(job_id))
        workers = []
        for row in rows:
            worker_id, pid, host, boot_id, proc_start, namespace, queues, started_at, beat = row
            workers.append(
                WorkerRecord(
                    worker_id=str(worker_id),
                    pid=int(pid),
                    host=str(host),
                    boot_id=str(boot_id),
                    proc_start=int(proc_start),
                    pid_namespace=str(namespace or ""),
                    queues=None if queues is None else tuple(json.loads(str(queues))),
                    started_at_us=int(started_at),
                    heartbeat_at_us=int(beat),
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
            try:
                row = self._db.execute(
                    f"SELECT {sql.JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
                ).fetchone()
            except UnicodeDecodeError:  # text that is not UTF-8, written by other code
                raw = self._db.execute(sql.JOB_ROW_RAW, (job_id,)).fetchone()
                row = None if raw is None else decode_rows([raw])[0]
        if row is None:
            raise JobNotFound(job_id)
        return decode_job(row)

    def counts(self) -> dict[tuple[str, JobState], int]:
        """Return the number of jobs per ``(queue_name, state)``."""
        with self._translated():
            # Read as bytes: text that is not UTF-8 (written by other code) cannot fail this.
            rows: list[Any] = self._db.execute(
                "SELECT CAST(queue_name AS BLOB), state, count(*) FROM jobs"
                " GROUP BY queue_name, state"
            ).fetchall()
        # A state litetasks does not know (written by other code) is no state it counts: no
        # worker claims, recovers or prunes such a job.
        known = {state.value: state for state in JobState}
        return {
            (bytes(q).decode("utf-8", "replace"), known[s]): int(n)
            for q, s, n in rows
            if s in known
        }

    def next_due_at(
        self, queues: Collection[str] | None = None, skip: Collection[str] = ()
    ) -> int | None:
        """Return the earliest ``due_at`` of a READY job in ``queues`` (None: no READY job),
        leaving out jobs whose task path is in ``skip`` (as the claim does)."""
        where, params = _in_queues(queues)
        if skip:
            where += " AND task_path NOT IN (SELECT value FROM json_each(?))"
            params = (*params, json.dumps(sorted(skip)))
        with self._translated():
            row = self._db.execute(
                f"SELECT min(due_at) FROM jobs WHERE state = 'READY'{where}", params
            ).fetchone()
        if row is None or row[0] is None:
            return None
        # A due time that is not a time litetasks stores (written by other code) is due now:
        # the claim takes such a job, and fails it.
        return row[0] if is_time(row[0]) else self._now()

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

    def checkpoint_passive(self) -> None:
        """Copy what it can of the WAL into the queue file, without waiting for anyone."""
        with self._translated():
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def replaced_files(self) -> list[str]:
        """Name the files at the path that are not the ones this store opened.

        ``"queue file"`` when it was deleted, moved away or replaced (or the symlink at the path
        now points elsewhere); ``"-wal"``, ``"-shm"`` for those. ``has_moved()`` (a callable
        attribute, 0.6 µs) answers for the queue file alone.
        """
        now = file_ids(self.path, self.real_path)
        names = [
            name
            for name, opened, found in zip(_FILE_NAMES, self.opened_files, now, strict=True)
            if opened != found
        ]
        if self.has_moved() and _FILE_NAMES[0] not in names:
            names.insert(0, _FILE_NAMES[0])
        return names

    def abandon(self) -> None:
        """Make closing this connection leave the WAL alone; the store is not used again.

        For a store whose -wal or -shm was replaced: see ``no_checkpoint_on_close``.
        """
        no_checkpoint_on_close(self._db)

    def copy_to(self, target: Path) -> None:
        """Write a copy of the queue, as this connection sees it, to the new file ``target``."""
        create_private_file(target)
        with self._translated():
            self._db.execute("VACUUM INTO ?", (str(target),))

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
        return self._translation


def _nothing() -> None:
    pass


_FILE_NAMES = ("queue file", "-wal", "-shm")  # in the order of ``file_ids``


# Successes whose return value is longer than this are settled one by one: in a batch their
# JSON text would be escaped into the batch's JSON and decoded again by SQLite.
_BATCH_VALUE_MAX = 65_536


def _error_json(error: ErrorRecord) -> str:
    return json.dumps(
        {"exception_class_path": error.exception_class_path, "traceback": error.traceback}
    )


def _take(db: apsw.Connection, pick: str, params: dict[str, Any]) -> list[Any]:
    """Claim the best due jobs (``sql.PICK_*`` picks them); return their rows, in any order.

    Rows come back as one JSON text (one step of one statement, see ``sql.PICK``); one by one
    when a value cannot travel so (a blob, as in a row written by other code, see
    ``sql.TAKEN``); and with text read from blobs when some text is not UTF-8.
    """
    seqs = db.execute(pick, params).fetchone()[0]  # type: ignore[index]
    if seqs == "[]":
        return []
    db.execute(sql.TAKE, {**params, "seqs": seqs})
    try:
        taken: Any = db.execute(sql.TAKEN, {"seqs": seqs}).fetchone()
        return list(json.loads(taken[0]))
    except (apsw.TooBigError, apsw.SQLError, ValueError):
        pass
    try:
        return db.execute(sql.TAKEN_ROWS, {"seqs": seqs}).fetchall()
    except UnicodeDecodeError:
        return decode_rows(db.execute(sql.TAKEN_ROWS_RAW, {"seqs": seqs}).fetchall())


def _insert_params(job: NewJob, now: int) -> tuple[Any, ...]:
    """The bindings of ``sql.INSERT`` for ``job``, enqueued at ``now``."""
    run_after = job.run_after_us
    if run_after is not None and not EARLIEST_US <= run_after <= LATEST_US:
        raise ValueError(_out_of_range("run_after_us", run_after))
    return (
        job.job_id,
        job.task_path,
        job.queue_name,
        job.priority,
        job.args_json,
        job.kwargs_json,
        job.run_after_us,
        job.max_attempts,
        job.unique_key,
        _hooks_json(job.hooks),
        now,
    )


def _out_of_range(name: str, value: int) -> str:
    return (
        f"{name} is {value!r}, outside the times a queue file holds ({EARLIEST_US} to "
        f"{LATEST_US} microseconds since the epoch: 0001-01-02 to 9999-12-30 UTC); nothing "
        "was written. Pass a time in that range."
    )


def _slot_or_none(value: Any) -> int | None:
    """A stored slot, or None if it is not an integer time a queue file holds."""
    if type(value) is int and EARLIEST_US <= value <= LATEST_US:
        return value
    return None


def _hooks_json(hooks: Sequence[Hook]) -> str | None:
    return json.dumps([dataclasses.asdict(h) for h in hooks]) if hooks else None


def _in_queues(queues: Collection[str] | None) -> tuple[str, tuple[str, ...]]:
    """A condition (and its binding) limiting a query to ``queues``; none for every queue."""
    if queues is None:
        return "", ()
    return " AND queue_name IN (SELECT value FROM json_each(?))", (json.dumps(list(queues)),)


def _exists(db: apsw.Connection, job_id: str) -> bool:
    return db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is not None
