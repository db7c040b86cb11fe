"""Attempts in flight inside one worker process: handed from whoever ran them to the dispatcher."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._store.clock import wall_clock_us
from .._store.records import ErrorRecord, JobRecord, Outcome
from ..exceptions import TaskInterrupted
from .interrupts import Interrupter

__all__ = ["AttemptRunner", "Attempts", "Done", "Finish", "Recorded", "interrupted", "reraise"]

Finish = Callable[[bool], None]
"""Called with whether the outcome was recorded; sends ``task_finished`` if it was."""


class AttemptRunner(Protocol):
    """What runs attempts (``execution.TaskRunner``): the pool knows nothing of Django."""

    def timeout_of(self, job: JobRecord) -> float | None: ...

    def run(self, job: JobRecord) -> tuple[Outcome, Finish]: ...

    def arun(self, job: JobRecord) -> Awaitable[tuple[Outcome, Finish]]: ...

    def interrupted(self, job: JobRecord, exc: BaseException) -> tuple[Outcome, Finish]: ...


class Recorded:
    """Whether a done's outcome is recorded: ``threading.Event``'s ``set``, ``is_set`` and
    ``wait`` for an event set once, by the thread that writes the transaction.

    One lock, held until ``set()``: an ``Event`` (a ``Condition`` and two locks) cost a
    microsecond a task to build and set.
    """

    __slots__ = ("_flag", "_lock")

    def __init__(self) -> None:
        self._flag = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            try:  # not contextlib.suppress: its object would cost as much as the rest
                self._lock.release()
            except RuntimeError:  # another thread set it at the same moment, and released it
                return

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until ``set()`` (at most ``timeout`` seconds); return whether it was."""
        if self._flag:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            self._lock.release()  # for the next wait
            return True
        return self._flag


@dataclass(slots=True)
class Done:
    """A finished attempt, handed from an executor to the dispatcher to be recorded."""

    outcome: Outcome
    finish: Finish
    recorded: Recorded = field(default_factory=Recorded)
    counted: bool = False
    on_recorded: Callable[[], None] | None = None  # for async tasks: wakes their event loop


def reraise(exc: BaseException) -> Finish:
    def finish(counted: bool) -> None:
        raise exc

    return finish


def interrupted(job: JobRecord, worker_id: str, exc: BaseException) -> Outcome:
    now = wall_clock_us()
    return Outcome(
        job_id=job.job_id,
        worker_id=worker_id,
        attempt=job.attempts,
        started_at_us=job.last_attempted_at_us or now,  # the claim time: the best we know
        finished_at_us=now,
        error=ErrorRecord.from_exception(exc),
    )


class Attempts:
    """The one sequence of an attempt, for executors and the event loop alike.

    Start watching it (its timeout, cancellation), run it unless it was cancelled before it
    started, turn an interrupt that landed around the task into its outcome, stop watching.
    ``KeyboardInterrupt`` raised around the task is recorded, then raised again by ``finish``.
    """

    def __init__(self, *, worker_id: str, runner: AttemptRunner, interrupter: Interrupter) -> None:
        self.worker_id = worker_id
        self.runner = runner
        self.interrupter = interrupter

    def run(self, job: JobRecord) -> Done:
        """Run ``job`` in this thread."""
        with _Attempt(self, job) as attempt:
            if attempt.begin(cancel=None):
                attempt.result = self.runner.run(job)
        return attempt.done()

    async def arun(
        self, job: JobRecord, cancel: Callable[[], None], on_recorded: Callable[[], None]
    ) -> Done:
        """Run ``job``'s coroutine on the running loop; ``cancel()`` cancels it (from any
        thread), ``on_recorded()`` is called once its outcome is recorded."""
        with _Attempt(self, job) as attempt:
            if attempt.begin(cancel=cancel):
                attempt.result = await self.runner.arun(job)
        return attempt.done(on_recorded)


class _Attempt:
    """One attempt, from ``begin()`` inside ``with`` to the end of the block; holds its
    result. Whatever an interrupt raises inside the block becomes the result."""

    def __init__(self, attempts: Attempts, job: JobRecord) -> None:
        self._attempts = attempts
        self._job = job
        self.result: tuple[Outcome, Finish] | None = None

    def __enter__(self) -> _Attempt:
        return self

    def begin(self, *, cancel: Callable[[], None] | None) -> bool:
        """Start watching the attempt; False if it was cancelled before it started (then
        its result is set: recorded, not run)."""
        attempts, job = self._attempts, self._job
        timeout_s = attempts.runner.timeout_of(job)
        cancelled = attempts.interrupter.begin(job, timeout_s, cancel=cancel)
        if cancelled is None:
            return True
        self.result = attempts.runner.interrupted(job, cancelled)
        return False

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> bool:
        attempts, job = self._attempts, self._job
        try:
            if isinstance(exc, KeyboardInterrupt):  # raised around the task, not by it
                self.result = interrupted(job, attempts.worker_id, exc), reraise(exc)
            elif isinstance(exc, TaskInterrupted):  # landed just after the task returned
                taken = attempts.interrupter.take(job.job_id, exc)
                self.result = attempts.runner.interrupted(job, taken)
        finally:
            _end_watch(attempts.interrupter, job.job_id)
        return isinstance(exc, (KeyboardInterrupt, TaskInterrupted))

    def done(self, on_recorded: Callable[[], None] | None = None) -> Done:
        assert self.result is not None
        outcome, finish = self.result
        return Done(outcome, finish, on_recorded=on_recorded)


def _end_watch(interrupter: Interrupter, job_id: str) -> None:
    # An interrupt fired a moment too late can land here, once: the attempt is over anyway.
    for _ in range(3):
        try:
            interrupter.end(job_id)
            return
        except TaskInterrupted:
            continue
