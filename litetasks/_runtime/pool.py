"""Claim, run, record: the worker pool of one process, with heartbeats and recovery.

``WorkerPool.run()`` makes the calling thread the *dispatcher* (``dispatcher.py``): it alone
waits for work, and it or an executor writes each transaction, which records finished attempts
and claims work for every idle executor (``transactions.py``, ``groupcommit.py``,
``capacity.py``). Executor threads only run tasks (``executors.py``); coroutine tasks share one
event loop (``eventloop.py``); both run an attempt the same way (``attempts.py``). A
maintenance thread heartbeats, recovers lost workers' tasks and checkpoints the WAL
(``maintenance.py``). The pool knows nothing of Django: the ``Runner`` is injected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
import time
from collections.abc import Callable, Collection
from typing import Protocol

from .._store.clock import wall_clock_us
from .._store.config import WorkerConfig
from .._store.liveness import ProcessIdentity, this_process
from .._store.records import JobRecord, WorkerRecord
from .._store.store import Store
from ..exceptions import StoreError, TaskInterrupted
from .attempts import AttemptRunner, Attempts
from .capacity import Capacity
from .dispatcher import Dispatcher
from .eventloop import AsyncLane
from .executors import Executors, WorkerStats
from .gate import Gate, gil_enabled
from .groupcommit import GroupCommit
from .interrupts import Interrupter
from .maintenance import Maintenance
from .recovery import recover_lost
from .stopping import StopRequest
from .transactions import Transactions
from .wakeup import Waiter

__all__ = ["Runner", "RunnerFactory", "WorkerPool"]

logger = logging.getLogger(__name__)

# How long run_once() backs off when the queue file stays locked past busy_timeout.
_BUSY_BACKOFF_S = 0.5
# At shutdown, how long executors get to send the task_finished signals of recorded tasks.
_FINISH_WAIT_S = 10.0


class Runner(AttemptRunner, Protocol):
    """Runs attempts (``execution.TaskRunner``), and says which jobs are coroutines and which
    task paths this worker leaves to others."""

    def is_async(self, job: JobRecord) -> bool: ...

    def not_here(self) -> Collection[str]: ...


# Builds the runner of a worker id, given what maps an interrupt raised in a task to the
# exception to record (``Interrupter.take``).
RunnerFactory = Callable[[str, Callable[[str, BaseException], BaseException]], Runner]


class WorkerPool:
    """A dispatcher and ``threads`` executors in this process, serving one queue file.

    ``stop()`` stops claiming; executors finish their current task. ``run()`` returns once they
    have, or after ``grace_s``, when whatever still runs is released back to READY.
    """

    def __init__(
        self,
        *,
        store_factory: Callable[[], Store],
        runner_factory: RunnerFactory,
        config: WorkerConfig,
        worker_id: str,
        identity: ProcessIdentity | None = None,
        can_exit: bool = False,
        parent_pid: int | None = None,
    ) -> None:
        self.config = config
        self.worker_id = worker_id
        self.identity = identity or this_process()
        # How the pool ended, for the supervisor: recycled, failed, a task ignored its interrupt
        # (this process must be replaced, see interrupts.py). Flags set once, by one
        # assignment, from any thread; read once run() has returned. Every other field shared
        # between threads lives in a collaborator, under its lock: GroupCommit._lock (outcomes
        # waiting), Capacity._lock (counts), Transactions._lock (one transaction at a time,
        # the last failure), Maintenance._lock (what to checkpoint), WorkerStats.lock.
        self.recycled = False
        self.failure: BaseException | None = None
        self.must_be_replaced = False
        self._can_exit = can_exit
        # The pool stops when this process (its supervisor) exits: it is known by its pid, which
        # stays our parent's until it dies. Never "a parent other than PID 1": a supervisor in
        # a container is PID 1.
        self._parent_pid = os.getppid() if parent_pid is None else parent_pid
        self._store_factory = store_factory
        self._stop = StopRequest(config.grace_s)
        self._interrupter = Interrupter(
            worker_id=worker_id,
            store_factory=store_factory,
            grace_s=config.interrupt_grace_s,
            on_stuck=self._stuck,
        )
        self._runner = runner_factory(worker_id, self._interrupter.take)
        self._wire()

    def _wire(self) -> None:
        """Build the collaborators; each gets what it uses, not the pool."""
        config, worker_id = self.config, self.worker_id
        self._group = GroupCommit()
        self._capacity = Capacity(
            threads=config.threads,
            prefetch=config.prefetch,
            max_tasks_per_child=config.max_tasks_per_child,
        )
        self._maintenance = Maintenance(
            worker_id=worker_id,
            config=config,
            register=self.register,
            recover=lambda store: recover_lost(store, config.lease_s, self.identity),
            supervisor_alive=lambda: os.getppid() == self._parent_pid,
        )
        self._tx = Transactions(
            config=config,
            worker_id=worker_id,
            group=self._group,
            capacity=self._capacity,
            is_stopping=self._stop.is_set,
            hand_out=self._hand_out,
            after_record=self._after_record,
            not_here=self._runner.not_here,
        )
        self._dispatcher = Dispatcher(
            config=config,
            transactions=self._tx,
            group=self._group,
            capacity=self._capacity,
            queued=self._queued,
            stop=self._stop,
            on_stop=self.stop,
            on_idle=self._maintenance.idle,
            not_here=self._runner.not_here,
        )
        self._wire_runners(
            Attempts(worker_id=worker_id, runner=self._runner, interrupter=self._interrupter)
        )

    def _wire_runners(self, attempts: Attempts) -> None:
        """Build the executors and the event loop, which run attempts."""
        threads = self.config.threads
        # Executors take turns, as many at once as keep the GIL busy (gate.py).
        gate = Gate(threads) if threads > 1 and gil_enabled() else None
        self._executors = Executors(
            threads=threads,
            attempts=attempts,
            gate=gate,
            store_factory=self._store_factory,
            hand_off=self._dispatcher.hand_off,
            is_stopping=self._stop.is_set,
            on_failure=self._fail,
        )
        self._loop = AsyncLane(
            attempts=attempts,
            hand_off=lambda done, returned: self._dispatcher.hand_off(done=done, returned=returned),
            is_stopping=self._stop.is_set,
            on_failure=self._fail,
        )

    # -- what the supervisor reads -----------------------------------------------------------

    @property
    def stats(self) -> WorkerStats:
        return self._executors.stats

    @property
    def is_stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def was_forced(self) -> bool:
        return self._stop.forced

    @property
    def is_damaged(self) -> bool:
        """The queue file is damaged (corrupt, not a database): the supervisor stops every
        worker."""
        return self._dispatcher.is_damaged

    @property
    def store_failure(self) -> StoreError | None:
        """Why the queue file failed this pool at last, if it did."""
        return self._tx.store_failure

    @property
    def unrecorded(self) -> list[str]:
        """Ids of the tasks whose outcomes the pool could not record."""
        return self._tx.unrecorded

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until ``stop()`` (or, in burst mode, until nothing is due); then clean up."""
        store = self._store_factory()
        self.register(store)
        recover_lost(store, self.config.lease_s, self.identity)
        waiter = self._dispatcher.waiter = Waiter(store.path)
        waiter.start()
        threading.Thread(target=self._maintain, name="litetasks-maintenance", daemon=True).start()
        self._executors.start()
        try:
            self._dispatcher.run(store)
        except BaseException:
            self._shutdown(store, crashed=True)
            raise
        self._shutdown(store)

    def stop(self, *, force: bool = False) -> None:
        """Stop claiming new tasks; running ones may finish. Safe from any thread.

        ``force`` ends the grace period now: ``run()`` returns at once, putting what still
        runs back to READY.
        """
        # Signal handlers call this on the dispatcher's thread, between any two bytecodes:
        # StopRequest decides by a plain flag, and the waiter's wake() takes no lock.
        self._stop.request(force=force)
        self._dispatcher.wake()

    def register(self, store: Store) -> None:
        """Register this worker, so no other pool mistakes its tasks for lost ones."""
        store.register_worker(self._record())

    def _maintain(self) -> None:
        self._maintenance.run(self._store_factory(), self._stop.wait, self.stop)

    def _shutdown(self, store: Store, *, crashed: bool = False) -> None:
        self.stop()
        unstarted = self._executors.take_queued() if crashed else []
        self._executors.end()
        self._tx.write_last(store)
        if crashed:
            # Tasks may be running, or finished and not handed off yet: putting them back as
            # not started would run them twice. Only the ones no executor took go back; the
            # rest are recovered as lost once this process has exited.
            with contextlib.suppress(StoreError):
                store.release(self.worker_id, unstarted)
            self._executors.abandon()
            self.close()
            return
        if self._capacity.busy == 0:
            # Every outcome is recorded; let executors send their last task_finished before
            # this process may exit. (After the grace period, running tasks are abandoned.)
            self._executors.join(_FINISH_WAIT_S)
        self._executors.abandon()
        self.close()
        _unregister(store, self.worker_id, self._tx)

    def close(self) -> None:
        """Stop the threads the pool started (the interrupter's watcher, the event loop, the
        waiter) and with them their connections. ``run()`` calls it; a caller of ``run_once``
        calls it when done."""
        self._loop.close()
        self._interrupter.stop()
        if self._dispatcher.waiter is not None:
            self._dispatcher.waiter.stop()

    def _record(self) -> WorkerRecord:
        return self.identity.worker(
            self.worker_id, self.config.queues, wall_clock_us(), threads=self.config.threads
        )

    # -- what collaborators call -------------------------------------------------------------

    def _hand_out(self, jobs: list[JobRecord]) -> None:
        """Give claimed jobs to the event loop (coroutines) and the executors (the rest)."""
        sync: list[JobRecord] = []
        coroutines: list[JobRecord] = []
        for job in jobs:
            (coroutines if self._runner.is_async(job) else sync).append(job)
        self._capacity.handed_out(sync=len(sync), coroutines=len(coroutines))
        for job in coroutines:
            self._loop.submit(job)
        for job in sync:
            self._executors.put(job)

    def _queued(self) -> int:
        return self._executors.queued()

    def _after_record(self, count: int) -> None:
        with self.stats.lock:
            self.stats.tasks_done += count
        self._maintenance.wrote()
        if self._should_recycle():
            self.recycled = True
            self.stop()

    def _should_recycle(self) -> bool:
        limit = self.config.max_tasks_per_child
        if limit and self._capacity.claimed >= limit:
            logger.info("Worker id=%s ran %d tasks; recycling", self.worker_id, limit)
            return True
        memory_limit = self.config.max_memory_per_child_mb
        if memory_limit and _rss_mb() >= memory_limit:
            logger.info("Worker id=%s uses over %d MB; recycling", self.worker_id, memory_limit)
            return True
        return False

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc
        self.stop()

    def _stuck(self, job: JobRecord, exc: TaskInterrupted) -> None:
        """A task ignored its interrupt (on the interrupter's thread)."""
        grace_s = self.config.interrupt_grace_s
        if _record_stuck(
            self._runner, self._store_factory, job, exc, can_exit=self._can_exit, grace_s=grace_s
        ):
            self.must_be_replaced = True
            self.stop(force=True)

    # -- in the calling thread (tests, litetasks.testing.drain) -------------------------------

    def run_once(self, store: Store) -> bool:
        """Claim one due task and run it in this thread; False when nothing is due."""
        jobs = store.claim(
            self.worker_id, queues=self.config.queues, limit=1, skip=self._runner.not_here()
        )
        for job in jobs:
            done = self._executors.run(job)
            while True:
                try:
                    [done.counted] = store.record([done.outcome])
                    break
                except StoreError:
                    logger.exception("Recording task id=%s failed; retrying", job.job_id)
                    time.sleep(_BUSY_BACKOFF_S)
            done.finish(done.counted)
        return bool(jobs)

    def wait_timeout(self, store: Store, *, idle: bool) -> float:
        """How long the dispatcher would sleep now with no transaction due."""
        return self._dispatcher.wait_timeout(store, idle=idle)


def _unregister(store: Store, worker_id: str, transactions: Transactions) -> None:
    """Put what still runs back to READY and unregister, unless outcomes are unrecorded."""
    if unrecorded := transactions.unrecorded:
        # Not released: they ran. They stay RUNNING under this worker, which is gone once
        # this process exits, so the next recovery records them as lost (WorkerLost).
        logger.error(
            "Worker id=%s could not record the outcome of %d task(s): %s. They stay "
            "RUNNING and are recovered as lost (WorkerLost) once the queue file works; "
            "their outcomes are not recorded.",
            worker_id,
            len(unrecorded),
            ", ".join(unrecorded),
        )
        return
    try:
        released = store.unregister_worker(worker_id)
    except StoreError as exc:
        transactions.note_failure(exc)
        logger.error(
            "Worker id=%s could not put its running tasks back to READY: %s They are "
            "recovered as lost (WorkerLost) once the queue file works.",
            worker_id,
            exc,
        )
        return
    if released:
        logger.warning(
            "Grace period over: %d task(s) still running were put back to READY: %s",
            len(released),
            ", ".join(released),
        )


def _record_stuck(
    runner: Runner,
    store_factory: Callable[[], Store],
    job: JobRecord,
    exc: TaskInterrupted,
    *,
    can_exit: bool,
    grace_s: float,
) -> bool:
    """Log a task that ignored its interrupt; in a process that may exit, record it and
    return True (the process must be replaced)."""
    if not can_exit:
        logger.error(
            "Task id=%s ignored its interrupt (%s) for %.1f s and keeps running: a thread "
            "cannot be killed in an in-process pool (litetasks run replaces the process)",
            job.job_id,
            type(exc).__name__,
            grace_s,
        )
        return False
    logger.error(
        "Task id=%s ignored its interrupt (%s) for %.1f s: recording it and replacing "
        "worker process pid=%d",
        job.job_id,
        type(exc).__name__,
        grace_s,
        os.getpid(),
    )
    outcome, finish = runner.interrupted(job, exc)
    counted = False
    try:
        [counted] = store_factory().record([outcome])
    except StoreError:
        logger.exception("Could not record task id=%s; it will be recovered", job.job_id)
    try:
        finish(counted)
    except Exception:
        logger.exception("Finishing task id=%s failed", job.job_id)
    return True


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return 0.0
    return pages * resource.getpagesize() / 1_048_576
