"""Stop running tasks: at their ``timeout``, or when someone cancels them.

One ``Interrupter`` thread per worker process knows every running attempt: its thread (or its
asyncio task) and its deadline. At the deadline, or when the queue file says the task was
cancelled (polled twice a second, only while tasks run), it raises ``TaskTimeout`` or
``TaskCancelled`` inside the task:

- in an executor thread, with ``PyThreadState_SetAsyncExc``: the exception is raised at the
  next Python bytecode the thread runs. A thread blocked in C (``time.sleep``, a socket read
  without a timeout, a C extension's loop) does not run bytecode, so it is not interrupted
  until that call returns;
- in a coroutine, by cancelling its asyncio task (``CancelledError`` at its next ``await``).

A task still running ``interrupt_grace_s`` later ignored the interruption. A supervised worker
process (``litetasks run``) then records that task's outcome itself, puts its other tasks back
to READY, and exits so the supervisor replaces it at once. An in-process pool (``runserver``)
cannot kill a thread: it logs the stuck task, which keeps its thread until it returns.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .._store.records import JobRecord
from .._store.store import Store
from ..exceptions import StoreError, TaskCancelled, TaskInterrupted, TaskTimeout

__all__ = ["Interrupter"]

logger = logging.getLogger(__name__)

# How often the queue file is asked which running tasks were cancelled, while any run.
CANCEL_POLL_S = 0.5


@dataclass(slots=True)
class _Attempt:
    job: JobRecord
    timeout_s: float | None
    deadline: float | None  # time.monotonic()
    thread_id: int | None = None  # an executor thread
    cancel: Callable[[], None] | None = None  # a coroutine: cancels its asyncio task
    fired: TaskInterrupted | None = None
    fired_at: float = 0.0
    reported: bool = False


class Interrupter:
    """Interrupt running attempts at their deadline or on cancellation.

    ``on_stuck(job, exc)`` is called (on this object's thread) for an attempt still running
    ``grace_s`` after it was interrupted.
    """

    def __init__(
        self,
        *,
        worker_id: str,
        store_factory: Callable[[], Store],
        grace_s: float,
        on_stuck: Callable[[JobRecord, TaskInterrupted], None],
    ) -> None:
        self.worker_id = worker_id
        self.grace_s = grace_s
        self.interrupts: dict[str, TaskInterrupted] = {}  # job id -> what was raised in it
        self._store_factory = store_factory
        self._on_stuck = on_stuck
        self._attempts: dict[str, _Attempt] = {}
        self._cancelled: set[str] = set()  # flagged before they started
        self._lock = threading.Condition()
        self._wake_at = 0.0  # when the watcher wakes next (time.monotonic())
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- called by executors and the event loop ----------------------------------------------

    def begin(
        self,
        job: JobRecord,
        timeout_s: float | None,
        *,
        cancel: Callable[[], None] | None = None,
    ) -> TaskCancelled | None:
        """Watch an attempt that starts now in this thread (or, with ``cancel``, a coroutine).

        Returns a ``TaskCancelled`` instead when the job was cancelled before it started: the
        caller records that and does not run it.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            if job.job_id in self._cancelled:
                self._cancelled.discard(job.job_id)
                return TaskCancelled("Cancelled before it started.")
            self._attempts[job.job_id] = _Attempt(
                job,
                timeout_s,
                deadline,
                thread_id=None if cancel else threading.get_ident(),
                cancel=cancel,
            )
            self._start()
            # Waking the watcher costs the executor a thread switch, so only a deadline
            # earlier than its next wake-up does; it sees other new attempts within
            # CANCEL_POLL_S anyway.
            if deadline is not None and deadline < self._wake_at:
                self._lock.notify()
        return None

    def end(self, job_id: str) -> None:
        """The attempt is over (returned, raised, or was interrupted)."""
        with self._lock:
            attempt = self._attempts.pop(job_id, None)
            if attempt is not None and attempt.fired is not None and attempt.thread_id:
                # Raised too late to land in the task? Then it must not land anywhere else.
                _set_async_exc(attempt.thread_id, None)

    def take(self, job_id: str, raised: BaseException) -> BaseException:
        """What to record for ``raised``: the interrupt (with its message) if it is ours."""
        fired = self.interrupts.pop(job_id, None)
        if fired is None or not isinstance(raised, (TaskInterrupted, _cancelled_error())):
            return raised
        return fired.with_traceback(raised.__traceback__)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(2)

    # -- the watcher thread ------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="litetasks-interrupter", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        store: Store | None = None
        next_poll = 0.0
        while True:
            with self._lock:
                if self._stopping:  # stop() came before this thread first waited
                    return
                wait = self._until_next(next_poll) if self._attempts else CANCEL_POLL_S
                self._wake_at = time.monotonic() + wait
                self._lock.wait(wait)
                self._wake_at = 0.0  # awake: nobody needs to notify
                if self._stopping:
                    return
                busy = bool(self._attempts)
            now = time.monotonic()
            if busy and now >= next_poll:  # the queue file is read only while tasks run
                next_poll = now + CANCEL_POLL_S
                if store is None:
                    store = self._store_factory()
                self._poll_cancels(store)
            self._fire_due(time.monotonic())

    def _until_next(self, next_poll: float) -> float:
        now = time.monotonic()
        wake = next_poll
        for attempt in self._attempts.values():
            if attempt.fired is None and attempt.deadline is not None:
                wake = min(wake, attempt.deadline)
            elif attempt.fired is not None and not attempt.reported:
                wake = min(wake, attempt.fired_at + self.grace_s)
        return max(0.0, wake - now)

    def _poll_cancels(self, store: Store) -> None:
        try:
            flagged = store.cancel_requested(self.worker_id)
        except StoreError:
            logger.exception("Could not read cancellations; will retry")
            return
        with self._lock:
            for job_id in flagged:
                attempt = self._attempts.get(job_id)
                if attempt is None:
                    self._cancelled.add(job_id)  # claimed, not started: never start it
                elif attempt.fired is None:
                    self._fire(attempt, TaskCancelled("Cancelled while it was running."))

    def _fire_due(self, now: float) -> None:
        stuck: list[_Attempt] = []
        with self._lock:
            for attempt in self._attempts.values():
                if attempt.fired is None:
                    if attempt.deadline is not None and now >= attempt.deadline:
                        self._fire(
                            attempt,
                            TaskTimeout(
                                f"It ran longer than its timeout of {attempt.timeout_s} s."
                            ),
                        )
                elif not attempt.reported and now >= attempt.fired_at + self.grace_s:
                    attempt.reported = True
                    stuck.append(attempt)
        for attempt in stuck:
            assert attempt.fired is not None
            self._on_stuck(attempt.job, attempt.fired)

    def _fire(self, attempt: _Attempt, exc: TaskInterrupted) -> None:
        """Raise ``exc`` in the attempt (the lock is held)."""
        attempt.fired = exc
        attempt.fired_at = time.monotonic()
        self.interrupts[attempt.job.job_id] = exc
        logger.warning("Task id=%s: %s Interrupting it.", attempt.job.job_id, exc)
        if attempt.cancel is not None:
            attempt.cancel()
        elif attempt.thread_id is not None:
            _set_async_exc(attempt.thread_id, type(exc))


def _cancelled_error() -> type[BaseException]:
    import asyncio

    return asyncio.CancelledError


def _set_async_exc(thread_id: int, kind: type[BaseException] | None) -> None:
    """Raise ``kind`` in thread ``thread_id`` at its next bytecode (None: clear a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(kind) if kind is not None else None
    )
