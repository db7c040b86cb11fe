"""The executor threads of a worker pool: they run claimed jobs, and only that.

An executor takes the next queued job, runs it (``Attempts``), hands its outcome over to be
recorded and goes on with the next one: it does not wait for the commit of one task before
starting the next. It sends each task's ``task_finished`` in order, once its outcome is
recorded, and all of them before it waits for more work or for its turn (``gate.py``).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .._store.faults import ACTIVE as FAULTS
from .._store.faults import fault
from .._store.records import JobRecord
from .._store.store import Store
from .attempts import Attempts, Done
from .gate import Gate, Turn

__all__ = ["Executors", "HandOff", "WorkerStats"]

logger = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """Counters of one pool, for recycling and the status line."""

    tasks_done: int = 0
    running: dict[str, str] = field(default_factory=dict)  # thread name -> job id
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards both


class HandOff(Protocol):
    """Give the pool a finished attempt or a job to put back; ``inline``: the executor's own
    store, to write a due transaction with."""

    def __call__(
        self, *, done: Done | None = None, returned: str | None = None, inline: Store | None = None
    ) -> None: ...


class Executors:
    """``threads`` executor threads and the queue of jobs claimed for them."""

    def __init__(
        self,
        *,
        threads: int,
        attempts: Attempts,
        gate: Gate | None,
        store_factory: Callable[[], Store],
        hand_off: HandOff,
        is_stopping: Callable[[], bool],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self.threads = threads
        self.stats = WorkerStats()
        self._attempts = attempts
        self._gate = gate
        self._store_factory = store_factory
        self._hand_off = hand_off
        self._is_stopping = is_stopping
        self._on_failure = on_failure
        self._jobs: queue.SimpleQueue[JobRecord | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._abandoned = threading.Event()

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._execute, name=f"litetasks-executor-{index}", daemon=True)
            for index in range(self.threads)
        ]
        for thread in self._threads:
            thread.start()

    def put(self, job: JobRecord) -> None:
        self._jobs.put(job)

    def queued(self) -> int:
        """How many jobs wait for an executor."""
        return self._jobs.qsize()

    def end(self) -> None:
        """Have every executor stop once the queued jobs are taken: all through the gate,
        then a None each."""
        if self._gate is not None:
            self._gate.open()
        for _ in range(self.threads):
            self._jobs.put(None)

    def abandon(self) -> None:
        """The pool has stopped: outcomes not recorded by now never will be (a forced stop put
        their jobs back). An executor still running a task ends once it returns, sending no
        ``task_finished`` for it, instead of waiting for ever with its connection open."""
        self._abandoned.set()

    def take_queued(self) -> list[str]:
        """Take every job still queued; return their ids."""
        taken = []
        while (job := _get_nowait(self._jobs)) is not _NOTHING_QUEUED:
            if isinstance(job, JobRecord):
                taken.append(job.job_id)
        return taken

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` in all for the executors to end."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def run(self, job: JobRecord) -> Done:
        """Run ``job`` in this thread, shown in ``stats.running`` meanwhile."""
        name = threading.current_thread().name
        with self.stats.lock:
            self.stats.running[name] = job.job_id
        try:
            if FAULTS:
                fault("run.before_call")
            return self._attempts.run(job)
        finally:
            with self.stats.lock:
                self.stats.running.pop(name, None)

    def _execute(self) -> None:
        """Run jobs; send each one's ``task_finished`` once its outcome is recorded."""
        unfinished: collections.deque[Done] = collections.deque()
        gate = self._gate
        turn: Turn | None = None
        try:
            store = self._store_factory()  # this thread's connection, for inline writes
            while True:
                while unfinished and unfinished[0].recorded.is_set():
                    done = unfinished.popleft()
                    done.finish(done.counted)
                if gate is not None and turn is None:
                    self._finish_all(unfinished)  # before waiting: its finishes must not wait too
                    turn = gate.enter()
                job = self._next_job(turn, unfinished)
                if job is None:
                    self._finish_all(unfinished)
                    return
                if self._is_stopping():
                    self._hand_off(returned=job.job_id)
                    continue
                if gate is None or turn is None:
                    unfinished.append(self.run(job))
                else:
                    turn = self._run_in_turn(gate, turn, job, unfinished)
                if FAULTS:
                    fault("run.after_return")
                self._hand_off(done=unfinished[-1], inline=store)
        except BaseException as exc:  # KeyboardInterrupt from a task, or a bug: stop the pool
            logger.exception("Executor failed; stopping worker id=%s", self._attempts.worker_id)
            self._on_failure(exc)
        finally:
            if gate is not None and turn is not None:
                gate.leave(turn)

    def _finish_all(self, unfinished: collections.deque[Done]) -> None:
        """Send each outcome's ``task_finished`` once it is recorded, in order."""
        while unfinished:
            done = unfinished.popleft()
            while not done.recorded.wait(_ABANDONED_CHECK_S):
                if self._abandoned.is_set():
                    done.counted = False
                    break
            done.finish(done.counted)

    def _next_job(self, turn: Turn | None, unfinished: collections.deque[Done]) -> JobRecord | None:
        """The next queued job, waiting for one if need be; None: the executor must stop."""
        job = _get_nowait(self._jobs)
        if job is _NOTHING_QUEUED:
            # Not inside ``except queue.Empty``: receivers of task_finished would see that
            # exception in sys.exc_info() and take a success for a failure.
            if self._gate is not None and turn is not None:
                self._gate.idle(turn)
            self._finish_all(unfinished)
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
        unfinished.append(self.run(job))
        wall_s = time.perf_counter() - wall_at
        cpu_s = time.thread_time() - cpu_at if measure else None
        return turn if gate.finished(turn, cpu_s, wall_s) else None


_NOTHING_QUEUED = object()
# How often an executor waiting for outcomes to be recorded looks whether the pool abandoned
# them (a forced stop): a recorded outcome ends the wait at once.
_ABANDONED_CHECK_S = 0.1


def _get_nowait(jobs: queue.SimpleQueue[JobRecord | None]) -> object:
    try:
        return jobs.get_nowait()
    except queue.Empty:
        return _NOTHING_QUEUED
