"""Claim, run, record: the worker threads of one process, with heartbeats and recovery.

``WorkerPool`` runs ``threads`` worker threads in the calling process plus one maintenance
thread (heartbeat, lost-worker recovery, idle checkpoints). It knows nothing of Django: the
``Runner`` that executes a job is injected.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .config import WorkerConfig
from .exceptions import StoreError
from .liveness import ProcessIdentity, classify_workers, this_process
from .records import ErrorRecord, JobRecord, Outcome, WorkerRecord
from .store import Store, wall_clock_us
from .wakeup import Waiter

__all__ = ["Runner", "WorkerPool", "WorkerStats", "lost_worker_error", "recover_lost"]

logger = logging.getLogger(__name__)

# How long a thread backs off when the queue file stays locked past busy_timeout.
_BUSY_BACKOFF_S = 0.5


class Runner(Protocol):
    def run(self, job: JobRecord) -> tuple[Outcome, Callable[[bool], None]]: ...


def lost_worker_error() -> ErrorRecord:
    return ErrorRecord(
        exception_class_path="litetasks.exceptions.WorkerLost",
        traceback=(
            "litetasks.exceptions.WorkerLost: the worker running this task stopped without "
            "recording an outcome (killed, out of memory, crashed, or the machine stopped).\n"
        ),
    )


def recover_lost(
    store: Store,
    lease_s: float,
    here: ProcessIdentity | None = None,
    known_dead: tuple[str, ...] = (),
) -> int:
    """Settle the jobs of workers that are dead or silent past the lease; return how many.

    On this host a worker is dead when its process is gone, whatever its heartbeat says; a
    worker elsewhere is lost when its heartbeat is older than ``lease_s``.
    """
    here = here or this_process()
    workers = store.get_workers()
    dead, alive = classify_workers(
        [(w.worker_id, w.host, w.boot_id, w.pid, w.proc_start) for w in workers], here
    )
    settled = store.recover_lost(
        stale_before_us=store.now_us() - int(lease_s * 1_000_000),
        error=lost_worker_error(),
        known_dead=[*dead, *known_dead],
        known_alive=alive,
    )
    for job_id, state in settled:
        logger.warning("Task id=%s was running under a lost worker; now %s", job_id, state)
    return len(settled)


@dataclass
class WorkerStats:
    """Counters of one pool, for recycling and the status line."""

    tasks_done: int = 0
    running: dict[str, str] = field(default_factory=dict)  # thread name -> job id
    lock: threading.Lock = field(default_factory=threading.Lock)


class WorkerPool:
    """Worker threads in this process, serving one queue file until stopped.

    ``stop()`` stops claiming; threads finish their current task. ``run()`` returns once they
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
    ) -> None:
        self.config = config
        self.worker_id = worker_id
        self.identity = identity or this_process()
        self.stats = WorkerStats()
        self._store_factory = store_factory
        self._runner = runner_factory(worker_id)
        self._stopping = threading.Event()
        self._waiters: list[Waiter] = []
        self._threads: list[threading.Thread] = []
        self._maintenance: threading.Thread | None = None
        self._idle = threading.Event()
        self._dirty = False  # tasks ran since the last checkpoint
        self.recycled = False
        self._next_heartbeat = 0.0
        self.failure: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until ``stop()`` (or, in burst mode, until nothing is due); then clean up."""
        store = self._store_factory()
        self.register(store)
        recover_lost(store, self.config.lease_s, self.identity)
        self._maintenance = threading.Thread(
            target=self._maintain, name="litetasks-maintenance", daemon=True
        )
        self._maintenance.start()
        for index in range(self.config.threads):
            waiter = Waiter(store.path)
            waiter.start()
            self._waiters.append(waiter)
            thread = threading.Thread(
                target=self._serve, args=(waiter,), name=f"litetasks-worker-{index}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        try:
            self._join_threads()
        finally:
            self._shutdown(store)

    def stop(self) -> None:
        """Stop claiming new tasks; running ones may finish. Safe from any thread."""
        self._stopping.set()
        for waiter in self._waiters:
            waiter.wake()

    @property
    def is_stopping(self) -> bool:
        return self._stopping.is_set()

    def _join_threads(self) -> None:
        for thread in self._threads:
            while thread.is_alive():
                thread.join(0.1)
                if self._stopping.is_set():
                    break
        if not self._stopping.is_set():
            return  # burst mode: every thread ran out of work
        deadline = time.monotonic() + self.config.grace_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _shutdown(self, store: Store) -> None:
        self._stopping.set()
        for waiter in self._waiters:
            waiter.stop()
        still_running = [t.name for t in self._threads if t.is_alive()]
        try:
            released = store.unregister_worker(self.worker_id)
        except StoreError:
            logger.exception("Could not release the tasks of worker id=%s", self.worker_id)
            return
        if released:
            logger.warning(
                "Grace period over: %d task(s) still running were put back to READY: %s "
                "(threads %s)",
                len(released),
                ", ".join(released),
                ", ".join(still_running),
            )

    def _record(self) -> WorkerRecord:
        return WorkerRecord(
            worker_id=self.worker_id,
            pid=self.identity.pid,
            host=self.identity.host,
            boot_id=self.identity.boot_id,
            proc_start=self.identity.proc_start,
            queues=self.config.queues,
            started_at_us=wall_clock_us(),
            heartbeat_at_us=wall_clock_us(),
        )

    # -- worker threads ----------------------------------------------------------------------

    def _serve(self, waiter: Waiter) -> None:
        store = self._store_factory()
        lane = _Lane(store)
        try:
            while self._serve_once(lane, waiter):
                pass
        except BaseException as exc:  # KeyboardInterrupt from a task, or a bug: stop the pool
            self.failure = exc
            logger.exception("Worker thread failed; stopping worker id=%s", self.worker_id)
            self.stop()
        finally:
            self._flush(lane)

    def _serve_once(self, lane: _Lane, waiter: Waiter) -> bool:
        """Record what ran, claim and run what is due, or wait; False when this thread is done.

        Recording the finished tasks and claiming the next ones share one transaction.
        """
        if self._stopping.is_set():
            return False
        waiter.clear()
        try:
            jobs = self._settle(lane, limit=self.config.prefetch)
        except StoreError:
            logger.exception("The queue file is unavailable; retrying in %.1f s", _BUSY_BACKOFF_S)
            waiter.wait(_BUSY_BACKOFF_S)
            return True
        if not jobs:
            if self.config.burst:
                return False
            self._idle.set()
            waiter.wait(self._idle_timeout(lane.store))
            return True
        for index, job in enumerate(jobs):
            if self._stopping.is_set():
                lane.store.release(self.worker_id, [j.job_id for j in jobs[index:]])
                return False
            self._run_job(lane, job)
            if self._should_recycle():
                self.recycled = True
                self.stop()
        return True

    def _run_job(self, lane: _Lane, job: JobRecord) -> None:
        name = threading.current_thread().name
        with self.stats.lock:
            self.stats.running[name] = job.job_id
        try:
            try:
                outcome, finish = self._runner.run(job)
            except KeyboardInterrupt as exc:  # raised around the task, not by it
                error = ErrorRecord.from_exception(exc)
                lane.pending.append((_interrupted(job, self.worker_id, error), _nothing))
                raise
            lane.pending.append((outcome, finish))
            if outcome.error is not None and outcome.error.is_keyboard_interrupt:
                self._flush(lane)  # records it, then its finish() raises it again
        finally:
            self._dirty = True
            with self.stats.lock:
                self.stats.running.pop(name, None)
                self.stats.tasks_done += 1

    def _settle(self, lane: _Lane, limit: int) -> list[JobRecord]:
        """Record ``lane``'s finished tasks and claim up to ``limit`` more, in one transaction."""
        pending, lane.pending = lane.pending, []
        try:
            settled, jobs = lane.store.record_and_claim(
                [outcome for outcome, _ in pending],
                self.worker_id,
                queues=self.config.queues,
                limit=limit,
            )
        except BaseException:
            lane.pending = pending + lane.pending  # never lose an outcome: retry it next time
            raise
        for (outcome, finish), ok in zip(pending, settled, strict=True):
            if not ok:
                logger.warning(
                    "Task id=%s finished after its worker was declared lost; outcome discarded",
                    outcome.job_id,
                )
            finish(ok)
        return jobs

    def _flush(self, lane: _Lane) -> None:
        """Record what is still pending before this thread ends, retrying while locked."""
        while lane.pending:
            try:
                self._settle(lane, limit=0)
            except StoreError:
                logger.exception("Recording finished tasks failed; retrying")
                time.sleep(_BUSY_BACKOFF_S)

    def _idle_timeout(self, store: Store) -> float:
        timeout = self.config.poll_interval_s
        try:
            due = store.next_due_at(self.config.queues)
        except StoreError:
            return timeout
        if due is not None:
            timeout = min(timeout, max(0.0, (due - store.now_us()) / 1_000_000))
        return timeout

    def _should_recycle(self) -> bool:
        limit = self.config.max_tasks_per_child
        if limit and self.stats.tasks_done >= limit:
            logger.info("Worker id=%s ran %d tasks; recycling", self.worker_id, limit)
            return True
        memory_limit = self.config.max_memory_per_child_mb
        if memory_limit and _rss_mb() >= memory_limit:
            logger.info("Worker id=%s uses over %d MB; recycling", self.worker_id, memory_limit)
            return True
        return False

    # -- maintenance -------------------------------------------------------------------------

    def _maintain(self) -> None:
        store = self._store_factory()
        parent = os.getppid()
        next_recovery = time.monotonic() + self.config.lease_s / 4
        while not self._stopping.wait(min(self.config.heartbeat_s, 1.0)):
            if os.getppid() != parent:
                logger.warning("The supervisor died; worker id=%s stops", self.worker_id)
                self.stop()
                return
            if time.monotonic() < self._next_heartbeat:
                continue
            self._next_heartbeat = time.monotonic() + self.config.heartbeat_s
            try:
                if not store.heartbeat(self.worker_id):
                    logger.warning(
                        "Worker id=%s was declared lost; registering again", self.worker_id
                    )
                    store.register_worker(self._record())
                if time.monotonic() >= next_recovery:
                    recover_lost(store, self.config.lease_s, self.identity)
                    next_recovery = time.monotonic() + self.config.lease_s / 4
                if self._idle.is_set() and self._dirty:
                    self._idle.clear()
                    self._dirty = False
                    self._checkpoint(store)
            except StoreError:
                logger.exception("Heartbeat failed for worker id=%s; retrying", self.worker_id)

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

    # -- in the calling thread (tests, litetasks.testing.drain) -------------------------------

    def run_once(self, store: Store) -> bool:
        """Claim one due task and run it in this thread; False when nothing is due."""
        lane = _Lane(store)
        jobs = store.claim(self.worker_id, queues=self.config.queues, limit=1)
        try:
            for job in jobs:
                self._run_job(lane, job)
        finally:
            self._flush(lane)
        return bool(jobs)

    def register(self, store: Store) -> None:
        """Register this worker, so no other pool mistakes its tasks for lost ones."""
        store.register_worker(self._record())


@dataclass
class _Lane:
    """One worker thread's connection and the outcomes it has not recorded yet."""

    store: Store
    pending: list[tuple[Outcome, Callable[[bool], None]]] = field(default_factory=list)


def _nothing(settled: bool) -> None:
    del settled


def _interrupted(job: JobRecord, worker_id: str, error: ErrorRecord) -> Outcome:
    now = wall_clock_us()
    started = job.last_attempted_at_us or now  # the claim time: the best we know
    return Outcome(
        job_id=job.job_id,
        worker_id=worker_id,
        attempt=job.attempts,
        started_at_us=started,
        finished_at_us=now,
        error=error,
    )


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return 0.0
    return pages * resource.getpagesize() / 1_048_576
