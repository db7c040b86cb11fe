"""Run coroutine tasks concurrently on one event loop per worker process."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from .._store.records import JobRecord
from .attempts import Attempts, Done

__all__ = ["AsyncLane"]

logger = logging.getLogger(__name__)


class AsyncLane:
    """One event loop thread per process that runs coroutine tasks concurrently.

    Started on the first coroutine task. A task's ``task_finished`` is sent on the loop once
    the dispatcher has recorded its outcome, as executors do for theirs.
    """

    def __init__(
        self,
        *,
        attempts: Attempts,
        hand_off: Callable[[Done | None, str | None], None],
        is_stopping: Callable[[], bool],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self._worker_id = attempts.worker_id
        self._attempts = attempts
        self._hand_off = hand_off
        self._is_stopping = is_stopping
        self._on_failure = on_failure
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def submit(self, job: JobRecord) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._serve, name="litetasks-event-loop", daemon=True
            )
            self._thread.start()
        asyncio.run_coroutine_threadsafe(self._run(job), self._loop)

    def close(self) -> None:
        """Stop the loop and close it; coroutines still running (grace over) are dropped."""
        if self._loop is None or self._thread is None:
            return
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        except BaseException as exc:  # KeyboardInterrupt from a task: stop the pool
            logger.exception("Event loop failed; stopping worker id=%s", self._worker_id)
            self._on_failure(exc)
        finally:
            for pending in asyncio.all_tasks(self._loop):
                pending.cancel()
            self._loop.close()

    async def _run(self, job: JobRecord) -> None:
        if self._is_stopping():
            self._hand_off(None, job.job_id)
            return
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        # A timeout or a cancellation cancels this asyncio task from another thread.
        def cancel() -> None:
            loop.call_soon_threadsafe(task.cancel)

        recorded: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(recorded.set_result, None)

        done = await self._attempts.arun(job, cancel, wake)
        self._hand_off(done, None)
        await recorded
        done.finish(done.counted)
