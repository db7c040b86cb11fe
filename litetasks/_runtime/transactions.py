"""One transaction of a worker pool: put jobs back, record outcomes, claim work, hand it out.

Whoever writes it (the dispatcher, or an executor that found it due) holds the one lock, so the
claim is sized (``Capacity``) knowing every job handed out before. What cannot be written stays
in the group (``GroupCommit``) for the next try.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection

from .._store.config import WorkerConfig
from .._store.faults import ACTIVE as FAULTS
from .._store.faults import fault
from .._store.outage import Outage
from .._store.records import JobRecord
from .._store.store import Store
from ..exceptions import StoreError
from .attempts import Done
from .capacity import Capacity
from .groupcommit import GroupCommit

__all__ = ["Transactions"]

logger = logging.getLogger(__name__)


class Transactions:
    """Writes a pool's transactions, one at a time; safe from any thread.

    ``hand_out(jobs)`` gives claimed jobs to executors and the event loop; ``after_record(n)``
    is told that ``n`` outcomes were recorded; ``not_here()`` lists task paths not to claim.
    """

    def __init__(
        self,
        *,
        config: WorkerConfig,
        worker_id: str,
        group: GroupCommit,
        capacity: Capacity,
        is_stopping: Callable[[], bool],
        hand_out: Callable[[list[JobRecord]], None],
        after_record: Callable[[int], None],
        not_here: Callable[[], Collection[str]],
    ) -> None:
        self.config = config
        self.worker_id = worker_id
        self._group = group
        self._capacity = capacity
        self._is_stopping = is_stopping
        self._hand_out = hand_out
        self._after_record = after_record
        self._not_here = not_here
        # Held while writing a transaction (by the dispatcher, or an executor writing inline),
        # so that no two are sized at once. Also guards _store_failure, _unrecorded, _outage.
        self._lock = threading.Lock()
        self._store_failure: StoreError | None = None  # the last transaction failed with it
        self._unrecorded: list[str] = []  # job ids whose outcomes could not be recorded at last
        self._outage = Outage(f"The queue file, for worker id={worker_id}")

    @property
    def store_failure(self) -> StoreError | None:
        with self._lock:
            return self._store_failure

    @property
    def unrecorded(self) -> list[str]:
        with self._lock:
            return list(self._unrecorded)

    def note_failure(self, exc: StoreError) -> None:
        """The queue file failed the pool outside a transaction (unregistering)."""
        with self._lock:
            self._store_failure = exc

    def failed(self, exc: StoreError) -> float:
        """Note a failed transaction; return how long to pause before the next (back-off)."""
        with self._lock:
            self._store_failure = exc
            return self._outage.failed(exc)

    def write_if(
        self, store: Store, due: Callable[[], bool], *, inline: bool = False
    ) -> tuple[list[JobRecord], int] | None:
        """Write a transaction if ``due()`` says so; return the jobs claimed and how many were
        asked for, or None if none was written.

        ``inline`` (an executor): None at once if another thread is writing, and no jobs if
        the queue file is failing (the dispatcher backs off). A ``StoreError`` is raised, what
        could not be written kept for the next try.
        """
        if not self._lock.acquire(blocking=not inline):
            return None
        try:
            if inline and self._store_failure is not None:
                return [], 0
            if not due():
                return None
            return self._write(store)
        finally:
            self._lock.release()

    def write_last(self, store: Store) -> None:
        """Try once more to record finished attempts and release unstarted jobs (stopping)."""
        with self._lock:
            done, returned = self._group.take()
            try:
                if returned:
                    store.release(self.worker_id, returned)
                    self._capacity.released(len(returned))
                if done:
                    self._record(store, done, 0)
            except StoreError as exc:
                self._store_failure = exc
                self._unrecorded = [d.outcome.job_id for d in done if not d.recorded.is_set()]

    def _write(self, store: Store) -> tuple[list[JobRecord], int]:
        done, returned = self._group.take()
        free = 0 if self._is_stopping() else self._capacity.free_slots(done)
        try:
            if returned:
                store.release(self.worker_id, returned)
                self._capacity.released(len(returned))
                returned = []
            jobs = self._record(store, done, free) if done or free > 0 else []
        except StoreError as exc:
            self._group.give_back(done, returned)
            self._store_failure = exc
            raise
        self._outage.recovered()
        self._store_failure = None
        if FAULTS and jobs:
            fault("claim.after_commit")
        self._hand_out(jobs)
        return jobs, free

    def _record(self, store: Store, done: list[Done], limit: int) -> list[JobRecord]:
        """Record finished attempts and claim up to ``limit`` jobs in one transaction."""
        try:
            counted, jobs = store.record_and_claim(
                [d.outcome for d in done],
                self.worker_id,
                queues=self.config.queues,
                limit=limit,
                skip=self._not_here() if limit else (),
            )
        except BaseException:
            self._group.give_back(done)
            raise
        if FAULTS and done:
            fault("record.after_commit")
        self._capacity.recorded(done)
        for item, ok in zip(done, counted, strict=True):
            if not ok:
                logger.warning(
                    "Task id=%s finished after its worker was declared lost; outcome discarded",
                    item.outcome.job_id,
                )
            item.counted = ok
            item.recorded.set()
            if item.on_recorded is not None:
                item.on_recorded()
        if done:
            self._after_record(len(done))
        return jobs
