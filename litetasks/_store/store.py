"""The queue file: enqueue, claim, record, recover. apsw and SQL only; no Django, no sleeping.

A ``Store`` wraps one apsw connection and belongs to one thread (open one per thread; opening is
cheap). Every write is one ``BEGIN IMMEDIATE`` transaction; the claim is one ``UPDATE … RETURNING``
statement, so two workers can never claim the same job.

``Store`` is the one API of the storage layer; each of its parts is a module of functions of
the connection's ``Handle``: ``enqueueing``, ``claiming`` and ``recording`` (the hot paths),
``workers`` (registry and recovery), ``actions`` (cancel, retry, prune), ``reading`` and
``maintenance``. Pausing, the counters, the console's reads and the forward are objects
behind a property each (``Store.pausing``, ``counters``, ``console``, ``forwarding``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import apsw

from . import actions, console, enqueueing, maintenance, reading, recording, workers
from .actions import CANCELLED_ERROR, CancelResult
from .clock import Clock, wall_clock_us
from .forwarding import Forwarding
from .handle import Handle
from .overview import ConsoleReads
from .pausing import Pausing
from .records import ErrorRecord, JobRecord, JobState, NewJob, Outcome, WorkerRecord
from .stats import Counters

__all__ = ["CancelResult", "Clock", "Store"]

_FINISHED = (JobState.SUCCESSFUL, JobState.FAILED)


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
        file_mode: int = 0o600,
    ) -> None:
        self._handle = handle = Handle(
            Path(path),
            synchronous=synchronous,
            busy_timeout_ms=busy_timeout_ms,
            clock=clock,
            on_ready=on_ready,
            file_mode=file_mode,
        )
        self.path = handle.path
        self.busy_timeout_ms = busy_timeout_ms
        # The file SQLite opened: ``path`` with every symlink followed.
        self.real_path = handle.real_path
        # Whether the queue file at the path is another one now (0.6 µs: after every enqueue).
        self.has_moved = handle.has_moved
        self.opened_files = handle.opened_files

    @property
    def _db(self) -> apsw.Connection:
        """The connection itself, for tests that write rows as other code would."""
        return self._handle.db

    @_db.setter
    def _db(self, connection: apsw.Connection) -> None:
        self._handle.db = connection

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        self._handle.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- producers (enqueueing.py) -------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob]) -> int:
        """Insert ``jobs`` READY in one transaction (all or nothing); return ``enqueued_at``."""
        return enqueueing.enqueue(self._handle, jobs)

    def enqueue_unique(self, jobs: Sequence[NewJob]) -> tuple[int, list[JobRecord | None]]:
        """Insert ``jobs``, skipping twins of live jobs; see ``enqueueing.enqueue_unique``."""
        return enqueueing.enqueue_unique(self._handle, jobs)

    def enqueue_slot(self, name: str, slot_us: int, job: NewJob) -> int | None:
        """Enqueue ``job`` as a periodic slot, once; see ``enqueueing.enqueue_slot``."""
        return enqueueing.enqueue_slot(self._handle, name, slot_us, job)

    def schedules(self) -> dict[str, tuple[int, str | None]]:
        """Return, per periodic schedule name, its last enqueued slot and that job's id."""
        return enqueueing.schedules(self._handle)

    def withdraw(self, job_ids: Collection[str]) -> list[str]:
        """Delete the jobs ``job_ids`` that are still READY; return the ids deleted."""
        return enqueueing.withdraw(self._handle, job_ids)

    # -- consumers (claiming.py, recording.py) -------------------------------------------------

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
        return recording.record_and_claim(self._handle, (), worker_id, queues, limit, skip)[1]

    def record(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Record claimed attempts in one transaction; return, per outcome, whether it counted.

        An outcome whose job is no longer RUNNING under that worker and attempt (it was
        recovered as lost meanwhile) changes nothing and yields False. A failed attempt goes
        back to READY at its ``retry_at_us`` when that is set and attempts remain.
        """
        return recording.record_and_claim(self._handle, outcomes, "", None, 0, ())[0]

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
        return recording.record_and_claim(self._handle, outcomes, worker_id, queues, limit, skip)

    def release(self, worker_id: str, job_ids: Collection[str] | None = None) -> list[str]:
        """Put ``worker_id``'s RUNNING jobs back to READY without counting the attempt.

        Used when a worker stops gracefully before its tasks finish. Returns the released ids.
        """
        return recording.release(self._handle, worker_id, job_ids)

    # -- workers (workers.py) ------------------------------------------------------------------

    def register_worker(self, worker: WorkerRecord) -> None:
        """Add (or replace) a worker row; its heartbeat starts now."""
        workers.register_worker(self._handle, worker)

    def heartbeat(self, worker_id: str) -> bool:
        """Refresh ``worker_id``'s heartbeat; False if its row is gone (it was declared lost)."""
        return workers.heartbeat(self._handle, worker_id)

    def unregister_worker(self, worker_id: str) -> list[str]:
        """Release ``worker_id``'s RUNNING jobs and delete its row; return the released ids."""
        return workers.unregister_worker(self._handle, worker_id)

    def recover_lost(
        self,
        *,
        stale_before_us: int,
        error: ErrorRecord,
        known_dead: Collection[str] = (),
        known_alive: Collection[str] = (),
    ) -> list[tuple[str, JobState]]:
        """Recover RUNNING jobs whose worker is lost; return ``(job_id, new_state)`` pairs.

        See ``workers.recover_lost`` for who is lost and what becomes of the jobs.
        """
        return workers.recover_lost(
            self._handle,
            stale_before_us=stale_before_us,
            error=error,
            known_dead=known_dead,
            known_alive=known_alive,
        )

    def get_workers(self) -> list[WorkerRecord]:
        """Return every registered worker with the ids of the jobs it is running."""
        return workers.get_workers(self._handle)

    def get_running_owners(self) -> set[str]:
        """Return the worker ids that own at least one RUNNING job."""
        return workers.get_running_owners(self._handle)

    # -- operator actions (actions.py) ---------------------------------------------------------

    def cancel(
        self, job_ids: Collection[str], *, error: ErrorRecord = CANCELLED_ERROR
    ) -> dict[str, CancelResult]:
        """Cancel jobs in one transaction: a READY job is FAILED with ``error`` and never runs;
        a RUNNING one is flagged, and its worker interrupts it (see ``cancel_requested``)."""
        return actions.cancel(self._handle, job_ids, error)

    def cancel_requested(self, worker_id: str) -> list[str]:
        """Return the ids of ``worker_id``'s RUNNING jobs that someone asked to cancel."""
        return actions.cancel_requested(self._handle, worker_id)

    def retry(self, job_ids: Collection[str]) -> dict[str, str]:
        """Make FAILED jobs READY again with a fresh attempt budget; see ``actions.retry``."""
        return actions.retry(self._handle, job_ids)

    def failed_job_ids(self, *, queues: Collection[str] | None = None) -> list[str]:
        """Return the ids of every FAILED job (of ``queues``), oldest first."""
        return actions.failed_job_ids(self._handle, queues)

    def prune(
        self,
        *,
        finished_before_us: int,
        states: Collection[JobState] = _FINISHED,
        batch: int = 1000,
    ) -> int:
        """Delete jobs in ``states`` that finished before ``finished_before_us``; return how many.

        ``batch`` rows per transaction (``prune_step``). READY and RUNNING jobs are never deleted.
        """
        return actions.prune(
            self._handle, finished_before_us=finished_before_us, states=states, batch=batch
        )

    def prune_step(
        self,
        *,
        finished_before_us: int,
        states: Collection[JobState] = _FINISHED,
        after: int = 0,
        batch: int = 1000,
    ) -> tuple[int, int | None]:
        """Prune the ``batch`` rows after ``after``; see ``actions.prune_step``."""
        return actions.prune_step(
            self._handle,
            finished_before_us=finished_before_us,
            states=states,
            after=after,
            batch=batch,
        )

    @property
    def forwarding(self) -> Forwarding:
        """What ``litetasks forward`` does to this file (forwarding.py)."""
        return Forwarding(self._handle)

    def delete(self, job_ids: Collection[str]) -> dict[str, str]:
        """Delete jobs that are not RUNNING; see ``console.delete``."""
        return console.delete(self._handle, job_ids)

    @property
    def console(self) -> ConsoleReads:
        """The operator's console's queries (console.py, overview.py) on this connection."""
        return ConsoleReads(self._handle)

    @property
    def pausing(self) -> Pausing:
        """Pause and resume queues and periodic schedules (pausing.py) on this connection."""
        return Pausing(self._handle)

    # -- reading (reading.py) ------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        """Return the job ``job_id``; raise ``JobNotFound`` if there is none."""
        return reading.get(self._handle, job_id)

    def counts(self) -> dict[tuple[str, JobState], int]:
        """Return the number of jobs per ``(queue_name, state)``."""
        return reading.counts(self._handle)

    def next_due_at(
        self, queues: Collection[str] | None = None, skip: Collection[str] = ()
    ) -> int | None:
        """Return the earliest ``due_at`` of a READY job in ``queues`` (None: no READY job),
        leaving out jobs whose task path is in ``skip`` (as the claim does)."""
        return reading.next_due_at(self._handle, queues, skip)

    @property
    def counters(self) -> Counters:
        """The counters of finished and live tasks (stats.py) on this connection."""
        return Counters(self._handle)

    def left(
        self, queues: Collection[str] | None, *, worker_prefix: str | None, since_us: int = 0
    ) -> reading.Left:
        """What the workers whose ids start with ``worker_prefix`` ran since ``since_us`` (None:
        not counted), and what is left READY (due now, later) or RUNNING in ``queues``."""
        return reading.left(self._handle, queues, worker_prefix, since_us)

    def max_row_bytes(self) -> int:
        """Return the most bytes one row may take (SQLite's ``SQLITE_LIMIT_LENGTH``)."""
        return self._handle.max_row_bytes()

    def now_us(self) -> int:
        """Return the store clock's current time (microseconds)."""
        return self._handle.now()

    # -- maintenance (maintenance.py) ----------------------------------------------------------

    def checkpoint(self) -> tuple[int, int]:
        """Checkpoint the WAL and truncate it, never waiting; see ``maintenance.checkpoint``."""
        return maintenance.checkpoint(self._handle)

    def checkpoint_restart(self) -> None:
        """Copy the WAL into the queue file and let it start over; see
        ``maintenance.checkpoint_restart``."""
        maintenance.checkpoint_restart(self._handle)

    def replaced_files(self) -> list[str]:
        """Name the files at the path that are not the ones this store opened.

        ``"queue file"``, ``"-wal"``, ``"-shm"``; ``has_moved()`` answers for the first alone.
        """
        return maintenance.replaced_files(self._handle)

    def abandon(self) -> None:
        """Make closing this connection leave the WAL alone; the store is not used again."""
        maintenance.abandon(self._handle)

    def copy_to(self, target: Path) -> None:
        """Write a copy of the queue, as this connection sees it, to the new file ``target``."""
        maintenance.copy_to(self._handle, target)

    def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check`` and return its first line (``ok`` when healthy)."""
        return maintenance.integrity_check(self._handle)
