"""Claim, run, record: the worker pool of one process, with heartbeats and recovery.

``WorkerPool.run()`` makes the calling thread the *dispatcher*: it alone talks to the queue
file, recording every finished task and claiming work for every idle executor thread in one
transaction. Executor threads only run tasks. With one writer per process there is no lock
contention between threads, and commits are grouped: under load one commit settles and claims
a task per thread. A maintenance thread heartbeats, recovers lost workers' tasks and
checkpoints the WAL when idle. The pool knows nothing of Django: the ``Runner`` is injected.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import resource
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .._store.config import WorkerConfig
from .._store.faults import ACTIVE as FAULTS
from .._store.faults import fault
from .._store.liveness import ProcessIdentity, this_process
from .._store.outage import Outage, is_damage
from .._store.records import JobRecord, Outcome, WorkerRecord
from .._store.store import Store, wall_clock_us
from ..exceptions import StoreError, TaskInterrupted
from .attempts import Done, Finish, interrupted, reraise
from .eventloop import AsyncLane
from .gate import Gate, Turn, gil_enabled
from .interrupts import Interrupter
from .janitor import Pruner
from .recovery import recover_lost
from .wakeup import Waiter

__all__ = ["Runner", "WorkerPool", "WorkerStats"]

logger = logging.getLogger(__name__)

# How long run_once() backs off when the queue file stays locked past busy_timeout.
_BUSY_BACKOFF_S = 0.5
# Claim ahead enough short tasks to cover this much work, never more than _PREFETCH_MAX jobs.
_PREFETCH_WINDOW_S = 0.005
_PREFETCH_MAX = 64
# Group commit: a finished task's outcome waits at most this long to be written with others in
# one transaction (one commit, one fsync), and at most this many outcomes wait. They are written
# at once when the executors run short of work (the same transaction claims more) or the pool
# stops. ``task_finished`` is sent once the outcome is written.
_GROUP_WINDOW_S = 0.002
_GROUP_MAX = 64
# Executors write their own groups when due (see _write_inline). The dispatcher steps in for
# outcomes that waited this long: those of tasks finished just before a long one started.
_BACKSTOP_S = 0.05
# At shutdown, how long executors get to send the task_finished signals of recorded tasks.
_FINISH_WAIT_S = 10.0
# Coroutine tasks share one event loop per process; this many may be in flight at once.
_ASYNC_CONCURRENCY = 100


class Runner(Protocol):
    translate: Callable[[str, BaseException], BaseException]

    def is_async(self, job: JobRecord) -> bool: ...

    def run(self, job: JobRecord) -> tuple[Outcome, Finish]: ...

    def arun(self, job: JobRecord) -> Awaitable[tuple[Outcome, Finish]]: ...

    def timeout_of(self, job: JobRecord) -> float | None: ...

    def interrupted(self, job: JobRecord, exc: BaseException) -> tuple[Outcome, Finish]: ...

    def not_here(self) -> Collection[str]: ...


@dataclass
class WorkerStats:
    """Counters of one pool, for recycling and the status line."""

    tasks_done: int = 0
    running: dict[str, str] = field(default_factory=dict)  # thread name -> job id
    lock: threading.Lock = field(default_factory=threading.Lock)


class WorkerPool:
    """A dispatcher and ``threads`` executors in this process, serving one queue file.

    ``stop()`` stops claiming; executors finish their current task. ``run()`` returns once they
    have, or after ``grace_s``, when whatever still runs is released back to READY.
    """

    def __init__(
        self,
        *,
        store_factory: Callable[[], Store],
        runner_factory: Callable[[str], Runner],
        config: WorkerConfig,
        worker_id: str,
        identity: ProcessIdentity | None = None,
        can_exit: bool = False,
        parent_pid: int | None = None,
    ) -> None:
        self.config = config
        self.worker_id = worker_id
        self.identity = identity or this_process()
        self.stats = WorkerStats()
        self.recycled = False
        self.was_forced = False
        # A task ignored its interrupt: this process must be replaced (see interrupts.py).
        self.must_be_replaced = False
        self._can_exit = can_exit
        # The pool stops when this process (its supervisor) exits: it is known by its pid, which
        # stays our parent's until it dies. Never "a parent other than PID 1": a supervisor in
        # a container is PID 1.
        self._parent_pid = os.getppid() if parent_pid is None else parent_pid
        self.failure: BaseException | None = None
        # The queue file failed this pool: outcomes it could not record (job ids), and whether
        # the file is damaged (corrupt, not a database): the supervisor then stops every worker.
        self.unrecorded: list[str] = []
        self.store_failure: StoreError | None = None
        self.is_damaged = False
        self._outage = Outage(f"The queue file, for worker id={worker_id}")
        self._store_factory = store_factory
        self._runner = runner_factory(worker_id)
        self._interrupter = Interrupter(
            worker_id=worker_id,
            store_factory=store_factory,
            grace_s=config.interrupt_grace_s,
            on_stuck=self._stuck,
        )
        self._runner.translate = self._interrupter.take
        self._stopping = threading.Event()
        self._stop_requested = False
        self._waiter: Waiter | None = None
        self._executors: list[threading.Thread] = []
        self._jobs: queue.SimpleQueue[JobRecord | None] = queue.SimpleQueue()
        self._done: list[Done] = []
        self._returned: list[str] = []  # claimed, never started: stopping
        self._first_done_at = 0.0  # when the oldest outcome in _done was handed off
        self._low_water = 0  # executors wake the dispatcher at this many queued jobs
        self._handoff = threading.Lock()
        # Held while writing a transaction (by the dispatcher, or an executor writing inline);
        # guards _busy, _claimed, _task_s and the event loop's count of coroutines in flight.
        self._tx_lock = threading.Lock()
        self._busy = 0  # claimed jobs not handed back yet
        self._idle = threading.Event()
        self._dirty = False  # tasks ran since the last checkpoint
        self._wrote = False  # tasks ran since the last passive checkpoint
        self._next_heartbeat = 0.0
        self._stop_deadline = 0.0
        self._loop = AsyncLane(
            worker_id=worker_id,
            arun=self._runner.arun,
            hand_off=lambda done, returned: self._hand_off(done=done, returned=returned),
            is_stopping=self._stopping.is_set,
            on_failure=self._fail,
            watch=lambda job, cancel: self._interrupter.begin(
                job, self._runner.timeout_of(job), cancel=cancel
            ),
            unwatch=self._interrupter.end,
            interrupted=self._runner.interrupted,
        )
        # Executors take turns, as many at once as keep the GIL busy (gate.py).
        self._gate = Gate(config.threads) if config.threads > 1 and gil_enabled() else None
        self._task_s = 0.1  # moving average of task run time; starts pessimistic
        self._claimed = 0  # jobs this pool has claimed, for max_tasks_per_child

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until ``stop()`` (or, in burst mode, until nothing is due); then clean up."""
        store = self._store_factory()
        self.register(store)
        recover_lost(store, self.config.lease_s, self.identity)
        self._waiter = Waiter(store.path)
        self._waiter.start()
        self._executors = [
            threading.Thread(target=self._execute, name=f"litetasks-executor-{index}")
            for index in range(self.config.threads)
        ]
        threads = [threading.Thread(target=self._maintain, name="litetasks-maintenance")]
        for thread in threads + self._executors:
            thread.daemon = True
            thread.start()
        try:
            self._dispatch(store)
        except BaseException:
            self._shutdown(store, crashed=True)
            raise
        self._shutdown(store)

    def stop(self, *, force: bool = False) -> None:
        """Stop claiming new tasks; running ones may finish. Safe from any thread.

        ``force`` ends the grace period now: ``run()`` returns at once, putting what still
        runs back to READY.
        """
        # Signal handlers call this on the dispatcher's thread, between any two bytecodes: a
        # plain flag (not _stopping's lock) decides, and the waiter's wake() takes no lock.
        if not self._stop_requested:
            self._stop_requested = True
            self._stop_deadline = time.monotonic() + self.config.grace_s
            self._stopping.set()
        if force:
            self.was_forced = True
            self._stop_deadline = time.monotonic()
        if self._waiter is not None:
            self._waiter.wake()

    @property
    def is_stopping(self) -> bool:
        return self._stopping.is_set()

    def register(self, store: Store) -> None:
        """Register this worker, so no other pool mistakes its tasks for lost ones."""
        store.register_worker(self._record())

    def _shutdown(self, store: Store, *, crashed: bool = False) -> None:
        self.stop()
        unstarted = _drain(self._jobs) if crashed else []
        self._end_executors()
        self._write_last(store)
        if crashed:
            # Tasks may be running, or finished and not handed off yet: putting them back as
            # not started would run them twice. Only the ones no executor took go back; the
            # rest are settled as lost once this process has exited.
            with contextlib.suppress(StoreError):
                store.release(self.worker_id, unstarted)
            self._loop.close()
            self._interrupter.stop()
            if self._waiter is not None:
                self._waiter.stop()
            return
        if self._busy == 0:
            # Every outcome is recorded; let executors send their last task_finished before
            # this process may exit. (After the grace period, running tasks are abandoned.)
            deadline = time.monotonic() + _FINISH_WAIT_S
            for thread in self._executors:
                thread.join(max(0.0, deadline - time.monotonic()))
        self._loop.close()
        self._interrupter.stop()
        if self._waiter is not None:
            self._waiter.stop()
        if self.unrecorded:
            # Not released: they ran. They stay RUNNING under this worker, which is gone once
            # this process exits, so the next recovery settles them as lost (WorkerLost).
            logger.error(
                "Worker id=%s could not record the outcome of %d task(s): %s. They stay "
                "RUNNING and are recovered as lost (WorkerLost) once the queue file works; "
                "their outcomes are not recorded.",
                self.worker_id,
                len(self.unrecorded),
                ", ".join(self.unrecorded),
            )
            return
        try:
            released = store.unregister_worker(self.worker_id)
        except StoreError as exc:
            self.store_failure = exc
            logger.error(
                "Worker id=%s could not put its running tasks back to READY: %s They are "
                "recovered as lost (WorkerLost) once the queue file works.",
                self.worker_id,
                exc,
            )
            return
        if released:
            logger.warning(
                "Grace period over: %d task(s) still running were put back to READY: %s",
                len(released),
                ", ".join(released),
            )

    def _end_executors(self) -> None:
        """Have every executor stop once the queued jobs are taken: all through the gate,
        then a None each."""
        if self._gate is not None:
            self._gate.open()
        for _ in range(self.config.threads):
            self._jobs.put(None)

    def _write_last(self, store: Store) -> None:
        """Try once more to record finished tasks and release unstarted ones."""
        with self._tx_lock:
            done, returned = self._take_handoffs()
            try:
                if returned:
                    store.release(self.worker_id, returned)
                    self._busy -= len(returned)
                if done:
                    self._settle(store, done, 0)
            except StoreError as exc:
                self.store_failure = exc
                self.unrecorded = [d.outcome.job_id for d in done if not d.recorded.is_set()]

    def _record(self) -> WorkerRecord:
        return WorkerRecord(
            worker_id=self.worker_id,
            pid=self.identity.pid,
            host=self.identity.host,
            boot_id=self.identity.boot_id,
            proc_start=self.identity.proc_start,
            pid_namespace=self.identity.pid_namespace,
            queues=self.config.queues,
            started_at_us=wall_clock_us(),
            heartbeat_at_us=wall_clock_us(),
        )

    # -- the dispatcher ----------------------------------------------------------------------

    def _dispatch(self, store: Store) -> None:
        """Write outcomes and claim work in one transaction, as seldom as the work allows.

        A transaction is due when outcomes have waited ``_GROUP_WINDOW_S`` (or
        ``_GROUP_MAX`` of them wait), when the executors run short of queued work, when jobs
        go back at shutdown, and when the pool stops. Otherwise the dispatcher sleeps until
        an executor, a ring or the clock says otherwise.
        """
        assert self._waiter is not None
        waiter = self._waiter
        starved = False  # the last claim got less than it asked: wait before asking again
        while True:
            waiter.clear()
            write_in = self._write_in(starved)
            if write_in is None or write_in > 0:
                if not self._keep_going(None):
                    return
                if write_in is None:
                    write_in = self._wait_timeout(store, idle=not self._busy)
                waiter.wait(write_in)
                starved = False
                continue
            try:
                written = self._transact_if_due(store, starved)
            except StoreError as exc:
                if not self._pause_after(exc):
                    return
                continue
            if written is None:
                continue  # an executor wrote it meanwhile
            jobs, free = written
            starved = len(jobs) < free
            if not self._keep_going(jobs if free > 0 else None):
                return

    def _transact_if_due(self, store: Store, starved: bool) -> tuple[list[JobRecord], int] | None:
        with self._tx_lock:
            if self._write_in(starved) != 0.0:
                return None
            return self._transact(store)

    def _transact(self, store: Store) -> tuple[list[JobRecord], int]:
        """Put jobs back, record outcomes and claim work, in one transaction; hold _tx_lock.

        Returns the claimed jobs and how many were asked for. On a ``StoreError`` what could
        not be written is kept for the next try.
        """
        done, returned = self._take_handoffs()
        free = 0 if self._stopping.is_set() else self._free_slots(done)
        try:
            if returned:
                store.release(self.worker_id, returned)
                self._busy -= len(returned)
                returned = []
            jobs = self._settle(store, done, free) if done or free > 0 else []
        except StoreError as exc:
            self._give_back(done, returned)
            self.store_failure = exc
            raise
        self._outage.recovered()
        self.store_failure = None
        if FAULTS and jobs:
            fault("claim.after_commit")
        self._hand_out(jobs)
        return jobs, free

    def _write_inline(self, store: Store) -> None:
        """On an executor thread: write the due transaction now rather than wake the dispatcher.

        Waking it costs a thread switch and, while executors hold the GIL, up to the
        interpreter's switch interval (5 ms) before it runs: with short tasks the executors
        ran dry waiting for it. Whoever finds a transaction due writes it; the dispatcher
        keeps what needs waiting (back-off after failures, stopping, idle polls).
        """
        if self.store_failure is not None or self._stopping.is_set():
            self._wake()
            return
        if not self._tx_lock.acquire(blocking=False):
            return  # the dispatcher or another executor is writing; it looks again after
        try:
            if self._write_in(False, inline=True) != 0.0:
                return
            try:
                jobs, _ = self._transact(store)
            except StoreError:
                jobs = []  # kept; the dispatcher tries again, backing off
        finally:
            self._tx_lock.release()
        if not jobs:  # out of work, or failing: the dispatcher decides what comes next
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.wake()

    def _hand_out(self, jobs: list[JobRecord]) -> None:
        self._claimed += len(jobs)
        for job in jobs:
            self._busy += 1
            if self._runner.is_async(job):
                self._loop.submit(job)
            else:
                self._jobs.put(job)

    def _write_in(self, starved: bool, *, inline: bool = False) -> float | None:
        """Seconds until the next transaction is due: 0 for now, None when none is.

        Outcomes are due after ``_GROUP_WINDOW_S``; for the dispatcher, outcomes that
        executors will write themselves are due only after ``_BACKSTOP_S``.
        """
        with self._handoff:
            pending, first_at, returning = len(self._done), self._first_done_at, self._returned
            waits_for_dispatcher = inline or any(d.on_recorded is not None for d in self._done)
        stopping = self._stopping.is_set()
        if returning or (pending and (stopping or pending >= _GROUP_MAX)):
            return 0.0
        if not starved and not stopping and self._hungry():
            return 0.0
        if pending:
            limit = _GROUP_WINDOW_S if waits_for_dispatcher else _BACKSTOP_S
            return max(0.0, first_at + limit - time.monotonic())
        return None

    def _hungry(self) -> bool:
        """Whether the executors are short of queued work (so a claim is worth a commit)."""
        if self._jobs.qsize() > self._low_water:
            return False
        with self._handoff:
            settling = list(self._done)
        return self._free_slots(settling) > 0

    def _pause_after(self, exc: StoreError) -> bool:
        """Back off after a failed transaction; False when the pool should give up and stop.

        A damaged file stops the pool (running tasks get their grace period). A stopping pool
        gives up at the end of its grace period, or as soon as no task is running any more:
        what it could not record is logged at shutdown and recovered as lost later.
        """
        self.store_failure = exc
        if is_damage(exc) and not self.is_damaged:
            self.is_damaged = True
            logger.error("Worker id=%s stops: %s", self.worker_id, exc)
            self.stop()
        pause = self._outage.failed(exc)
        if self._stopping.is_set():
            with self._handoff:
                pending = len(self._done) + len(self._returned)
            if self._busy - pending - self._loop.in_flight <= 0 and not self._loop.in_flight:
                return False  # nothing runs: only outcomes wait, for a file that fails
        until = time.monotonic() + pause
        assert self._waiter is not None
        while (left := until - time.monotonic()) > 0:
            if self._stopping.is_set():
                left = min(left, self._stop_deadline - time.monotonic())
                if left <= 0:
                    return False
            self._waiter.clear()
            self._waiter.wait(left)
        return True

    def _free_slots(self, settling: Sequence[Done]) -> int:
        """How many more jobs to claim: one per idle executor, plus some queued ahead.

        Queued jobs let an executor start its next task without waiting for a commit, and let
        one commit settle many tasks. How many depends on how long tasks take: enough to cover
        about ``_PREFETCH_WINDOW_S`` of work, at least ``prefetch``, at most
        ``_PREFETCH_MAX``. Slow tasks get no more than ``prefetch``, so they are not hoarded
        while other processes idle. Coroutine tasks run on the event loop, not on executors,
        up to ``_ASYNC_CONCURRENCY`` at once. ``settling`` are finished attempts about to be
        recorded: their slots are free.
        """
        ahead = max(
            self.config.prefetch,
            min(int(_PREFETCH_WINDOW_S / self._task_s) * self.config.threads, _PREFETCH_MAX),
        )
        # Executors ask for more work when this few jobs are left queued.
        self._low_water = ahead // 2
        settling_async = sum(1 for item in settling if item.on_recorded is not None)
        in_flight = self._loop.in_flight - settling_async
        running = self._busy - len(settling) - in_flight  # executors' jobs, queued or running
        free = min(self.config.threads + ahead - running, _ASYNC_CONCURRENCY - in_flight)
        if self.config.max_tasks_per_child:  # never claim past the recycling limit
            free = min(free, self.config.max_tasks_per_child - self._claimed)
        return max(0, free)

    def _keep_going(self, claimed: list[JobRecord] | None) -> bool:
        """False when the dispatcher is done: stopped, or (burst) a claim found nothing to do.

        ``claimed`` is what the last transaction claimed, None if it did not try to.
        """
        if self._stopping.is_set():
            # Done when nothing runs, or when the grace period is over (_shutdown releases).
            return self._busy > 0 and time.monotonic() < self._stop_deadline
        return not (self.config.burst and claimed == [] and self._busy == 0)

    def _settle(self, store: Store, done: list[Done], limit: int) -> list[JobRecord]:
        """Record finished attempts and claim up to ``limit`` jobs in one transaction."""
        try:
            settled, jobs = store.record_and_claim(
                [d.outcome for d in done],
                self.worker_id,
                queues=self.config.queues,
                limit=limit,
                skip=self._runner.not_here() if limit else (),
            )
        except BaseException:
            self._give_back(done)
            raise
        if FAULTS and done:
            fault("record.after_commit")
        self._busy -= len(done)
        self._loop.settled(sum(1 for item in done if item.on_recorded is not None))
        for item, ok in zip(done, settled, strict=True):
            if not ok:
                logger.warning(
                    "Task id=%s finished after its worker was declared lost; outcome discarded",
                    item.outcome.job_id,
                )
            item.settled = ok
            item.recorded.set()
            if item.on_recorded is not None:
                item.on_recorded()
        if done:
            run_s = sum(d.outcome.finished_at_us - d.outcome.started_at_us for d in done) / 1e6
            self._task_s = 0.8 * self._task_s + 0.2 * max(run_s / len(done), 1e-6)
            self._dirty = self._wrote = True
            self.stats.tasks_done += len(done)
            if self._should_recycle():
                self.recycled = True
                self.stop()
        return jobs

    def _take_handoffs(self) -> tuple[list[Done], list[str]]:
        with self._handoff:
            done, self._done = self._done, []
            returned, self._returned = self._returned, []
        return done, returned

    def _give_back(self, done: list[Done], returned: Sequence[str] = ()) -> None:
        """Keep outcomes (and jobs to release) that could not be written for the next try."""
        with self._handoff:
            # Idempotent: _settle gives back what it could not record, and so may its caller.
            kept = {id(item) for item in self._done}
            self._done[:0] = [d for d in done if not d.recorded.is_set() and id(d) not in kept]
            self._returned[:0] = [job_id for job_id in returned if job_id not in self._returned]

    def _wait_timeout(self, store: Store, *, idle: bool) -> float:
        if self._stopping.is_set():
            return max(0.0, min(0.1, self._stop_deadline - time.monotonic()))
        timeout = self.config.poll_interval_s
        if not idle:
            # Executors may leave outcomes for the dispatcher without waking it (_hand_off).
            return min(timeout, _BACKSTOP_S)
        self._idle.set()
        try:
            # Not the tasks this worker leaves to others: due, they would keep it spinning.
            due = store.next_due_at(self.config.queues, skip=self._runner.not_here())
        except StoreError:
            return timeout
        if due is not None:
            timeout = min(timeout, max(0.0, (due - store.now_us()) / 1_000_000))
        return timeout

    def _should_recycle(self) -> bool:
        limit = self.config.max_tasks_per_child
        if limit and self._claimed >= limit:
            logger.info("Worker id=%s ran %d tasks; recycling", self.worker_id, limit)
            return True
        memory_limit = self.config.max_memory_per_child_mb
        if memory_limit and _rss_mb() >= memory_limit:
            logger.info("Worker id=%s uses over %d MB; recycling", self.worker_id, memory_limit)
            return True
        return False

    # -- executors ---------------------------------------------------------------------------

    def _execute(self) -> None:
        """Run jobs; send each one's ``task_finished`` once the dispatcher has recorded it.

        An executor does not wait for the commit of one task before starting the next queued
        one: finishes are sent in order, as soon as their outcome is recorded, and all of
        them before the executor waits for more work (or for its turn, see gate.py).
        """
        unfinished: collections.deque[Done] = collections.deque()
        gate = self._gate
        turn: Turn | None = None
        try:
            store = self._store_factory()  # this thread's connection, for inline writes
            while True:
                while unfinished and unfinished[0].recorded.is_set():
                    done = unfinished.popleft()
                    done.finish(done.settled)
                if gate is not None and turn is None:
                    _finish_all(unfinished)  # before waiting: its finishes must not wait too
                    turn = gate.enter()
                job = self._next_job(turn, unfinished)
                if job is None:
                    _finish_all(unfinished)
                    return
                if self._stopping.is_set():
                    self._hand_off(returned=job.job_id)
                    continue
                if gate is None or turn is None:
                    unfinished.append(self._run(job))
                else:
                    turn = self._run_in_turn(gate, turn, job, unfinished)
                if FAULTS:
                    fault("run.after_return")
                self._hand_off(done=unfinished[-1], inline=store)
        except BaseException as exc:  # KeyboardInterrupt from a task, or a bug: stop the pool
            logger.exception("Executor failed; stopping worker id=%s", self.worker_id)
            self._fail(exc)
        finally:
            if gate is not None and turn is not None:
                gate.leave(turn)

    def _next_job(self, turn: Turn | None, unfinished: collections.deque[Done]) -> JobRecord | None:
        """The next queued job, waiting for one if need be; None: the executor must stop."""
        job = _get_nowait(self._jobs)
        if job is _NOTHING_QUEUED:
            # Not inside ``except queue.Empty``: receivers of task_finished would see that
            # exception in sys.exc_info() and take a success for a failure.
            if self._gate is not None and turn is not None:
                self._gate.idle(turn)
            _finish_all(unfinished)
            job = self._jobs.get()
        assert job is None or isinstance(job, JobRecord)
        return job

    def _run_in_turn(
        self, gate: Gate, turn: Turn, job: JobRecord, unfinished: collections.deque[Done]
    ) -> Turn | None:
        """Run ``job`` in ``turn``; return the turn, or None if the executor gave it back."""
        measure = gate.started(turn)
        cpu_at = time.thread_time() if measure else 0.0
        wall_at = time.perf_counter()
        unfinished.append(self._run(job))
        wall_s = time.perf_counter() - wall_at
        cpu_s = time.thread_time() - cpu_at if measure else None
        return turn if gate.finished(turn, cpu_s, wall_s) else None

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc
        self.stop()

    def _run(self, job: JobRecord) -> Done:
        name = threading.current_thread().name
        with self.stats.lock:
            self.stats.running[name] = job.job_id
        try:
            if FAULTS:
                fault("run.before_call")
            cancelled = self._interrupter.begin(job, self._runner.timeout_of(job))
            if cancelled is not None:
                outcome, finish = self._runner.interrupted(job, cancelled)
            else:
                outcome, finish = self._runner.run(job)
        except KeyboardInterrupt as exc:  # raised around the task, not by it
            outcome, finish = interrupted(job, self.worker_id, exc), reraise(exc)
        except TaskInterrupted as exc:  # landed just after the task itself returned
            outcome, finish = self._runner.interrupted(job, self._runner.translate(job.job_id, exc))
        finally:
            _end_watch(self._interrupter, job.job_id)
            with self.stats.lock:
                self.stats.running.pop(name, None)
        return Done(outcome, finish)

    def _stuck(self, job: JobRecord, exc: TaskInterrupted) -> None:
        """A task ignored its interrupt (on the interrupter's thread)."""
        if not self._can_exit:
            logger.error(
                "Task id=%s ignored its interrupt (%s) for %.1f s and keeps running: a thread "
                "cannot be killed in an in-process pool (litetasks run replaces the process)",
                job.job_id,
                type(exc).__name__,
                self.config.interrupt_grace_s,
            )
            return
        logger.error(
            "Task id=%s ignored its interrupt (%s) for %.1f s: recording it and replacing "
            "worker process pid=%d",
            job.job_id,
            type(exc).__name__,
            self.config.interrupt_grace_s,
            os.getpid(),
        )
        outcome, finish = self._runner.interrupted(job, exc)
        settled = False
        try:
            [settled] = self._store_factory().record([outcome])
        except StoreError:
            logger.exception("Could not record task id=%s; it will be recovered", job.job_id)
        try:
            finish(settled)
        except Exception:
            logger.exception("Finishing task id=%s failed", job.job_id)
        self.must_be_replaced = True
        self.stop(force=True)

    def _hand_off(
        self, *, done: Done | None = None, returned: str | None = None, inline: Store | None = None
    ) -> None:
        """Give the dispatcher a finished attempt or a job to put back; see that it acts.

        A transaction is due on a job to put back, on a group of outcomes that is full or has
        waited ``_GROUP_WINDOW_S``, and when the executors run short of queued work: an
        executor (``inline``: its store) writes it itself, anyone else wakes the dispatcher,
        also for the first outcome of a group (to write it when it has waited). Groups that
        executors leave waiting, the dispatcher writes after ``_BACKSTOP_S``.
        """
        now = time.monotonic()
        with self._handoff:
            first = not self._done and not self._returned
            if done is not None:
                if not self._done:
                    self._first_done_at = now
                self._done.append(done)
            if returned is not None:
                self._returned.append(returned)
            due = (
                returned is not None
                or len(self._done) >= _GROUP_MAX
                or (bool(self._done) and now - self._first_done_at >= _GROUP_WINDOW_S)
            )
        due = due or self._jobs.qsize() <= self._low_water
        if due and inline is not None:
            self._write_inline(inline)
        elif due or (first and inline is None):
            self._wake()

    # -- in the calling thread (tests, litetasks.testing.drain) -------------------------------

    def run_once(self, store: Store) -> bool:
        """Claim one due task and run it in this thread; False when nothing is due."""
        jobs = store.claim(
            self.worker_id, queues=self.config.queues, limit=1, skip=self._runner.not_here()
        )
        for job in jobs:
            done = self._run(job)
            while True:
                try:
                    [done.settled] = store.record([done.outcome])
                    break
                except StoreError:
                    logger.exception("Recording task id=%s failed; retrying", job.job_id)
                    time.sleep(_BUSY_BACKOFF_S)
            done.finish(done.settled)
        return bool(jobs)

    # -- maintenance -------------------------------------------------------------------------

    def _maintain(self) -> None:
        store = self._store_factory()
        outage = Outage(f"Heartbeat of worker id={self.worker_id}")
        pruner = Pruner(self.config.results_ttl_s)
        next_recovery = time.monotonic() + self.config.lease_s / 4
        while not self._stopping.wait(min(self.config.heartbeat_s, 1.0)):
            if os.getppid() != self._parent_pid:
                logger.warning("The supervisor died; worker id=%s stops", self.worker_id)
                self.stop()
                return
            if self._wrote:
                self._wrote = False
                self._checkpoint_passive(store)
            if time.monotonic() < self._next_heartbeat:
                continue
            self._next_heartbeat = time.monotonic() + self.config.heartbeat_s
            try:
                if not store.heartbeat(self.worker_id):
                    logger.warning(
                        "Worker id=%s was declared lost; registering again", self.worker_id
                    )
                    self.register(store)
                if time.monotonic() >= next_recovery:
                    recover_lost(store, self.config.lease_s, self.identity)
                    next_recovery = time.monotonic() + self.config.lease_s / 4
                pruner.tick(store)
                if self._idle.is_set() and self._dirty:
                    self._idle.clear()
                    self._dirty = False
                    self._checkpoint(store)
            except StoreError as exc:
                # Retried at the next heartbeat: the dispatcher backs off and decides to stop.
                self._next_heartbeat = time.monotonic() + outage.failed(exc)
            else:
                outage.recovered()

    def _checkpoint_passive(self, store: Store) -> None:
        """Checkpoint from this thread each second of work, so that commits do not have to."""
        try:
            store.checkpoint_passive()
        except StoreError as exc:  # another checkpoint runs; a failing file is reported by
            logger.debug("Passive checkpoint skipped: %s", exc)  # the dispatcher and heartbeat

    def _checkpoint(self, store: Store) -> None:
        frames, done = store.checkpoint()
        if done < frames:
            logger.warning(
                "WAL checkpoint of %s is blocked: %d of %d frames copied. A connection holds a "
                "read transaction open; the -wal file grows until it closes.",
                store.path,
                done,
                frames,
            )


_NOTHING_QUEUED = object()


def _get_nowait(jobs: queue.SimpleQueue[JobRecord | None]) -> object:
    try:
        return jobs.get_nowait()
    except queue.Empty:
        return _NOTHING_QUEUED


def _end_watch(interrupter: Interrupter, job_id: str) -> None:
    # An interrupt fired a moment too late can land here, once: the attempt is over anyway.
    for _ in range(3):
        try:
            interrupter.end(job_id)
            return
        except TaskInterrupted:
            continue


def _drain(jobs: queue.SimpleQueue[JobRecord | None]) -> list[str]:
    """Take every job still queued for the executors; return their ids."""
    taken = []
    while (job := _get_nowait(jobs)) is not _NOTHING_QUEUED:
        if isinstance(job, JobRecord):
            taken.append(job.job_id)
    return taken


def _finish_all(unfinished: collections.deque[Done]) -> None:
    while unfinished:
        done = unfinished.popleft()
        done.recorded.wait()
        done.finish(done.settled)


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return 0.0
    return pages * resource.getpagesize() / 1_048_576
