"""Run periodic schedules: enqueue each slot when it is due, once per queue file.

The schedules are declared in ``litetasks._django.periodic`` (``periodic()``, settings). The
supervisor of ``litetasks run`` calls ``Scheduler.tick()`` from its loop; the ``runserver``
autorun pool runs one in a thread (``start_scheduler_thread``). Each slot is enqueued once,
however many schedulers share the queue file: ``SQLiteBackend.enqueue_slot`` records the last
slot per schedule in the transaction that inserts its job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .._django.periodic import Schedule, datetime_at, load_schedules
from .._store.clock import Clock, wall_clock_us
from ..exceptions import ConfigurationError, StoreError

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend
    from .._django.compat import Task

__all__ = ["ON_TIME_S", "Scheduler", "start_scheduler_thread"]

logger = logging.getLogger(__name__)

# With catch_up="none", a slot is still run if the pool notices it this late (seconds).
ON_TIME_S = 60.0


class Scheduler:
    """Enqueue the due slots of ``schedules``; ``tick()`` says when to call it again."""

    def __init__(
        self,
        backend: SQLiteBackend,
        schedules: Mapping[str, Schedule],
        *,
        clock: Clock | None = None,
    ) -> None:
        self.backend = backend
        self.schedules = dict(schedules)
        self._now = clock or wall_clock_us
        # A new schedule's first slot is the first one at or after the pool's start.
        self._started = self._now() - 1
        self._skipped: dict[str, int] = {}  # catch_up="none": the last slot skipped
        self._tasks: dict[str, Task] = {}

    def tick(self) -> float:
        """Enqueue every slot that is due; return seconds until the next one (at most 60)."""
        if not self.schedules:
            return 60.0
        now = self._now()
        try:
            recorded = self.backend.store.schedules()
        except StoreError:
            logger.exception("Reading periodic schedules failed; will retry")
            return 5.0
        wait_us = 60_000_000
        for name, schedule in self.schedules.items():
            last = recorded.get(name, (None, None))[0]
            after = self._started if last is None else last
            after = max(after, self._skipped.get(name, after))
            slot = schedule.latest_slot(now)
            if slot is not None and slot > after:
                self._fire(schedule, slot, now)
            following = schedule.next_slot(max(now, after))
            if following is not None:
                wait_us = min(wait_us, max(0, following - now))
        return max(0.0, wait_us / 1_000_000)

    def next_runs(self) -> dict[str, int | None]:
        """The next slot of each schedule (µs since the epoch), for ``litetasks status``."""
        now = self._now()
        return {name: s.next_slot(now) for name, s in self.schedules.items()}

    def _fire(self, schedule: Schedule, slot: int, now: int) -> None:
        if schedule.catch_up == "none" and now - slot > ON_TIME_S * 1_000_000:
            logger.info(
                "Periodic %s: skipping the missed slot %s (catch_up='none')",
                schedule.name,
                datetime_at(slot, schedule.tz).isoformat(),
            )
            self._skipped[schedule.name] = slot
            return
        task = self._task(schedule)
        try:
            result = self.backend.enqueue_slot(
                task, schedule.name, slot, list(schedule.args), dict(schedule.kwargs)
            )
        except Exception:
            logger.exception("Periodic %s: enqueueing its slot failed; will retry", schedule.name)
            return
        if result is not None:
            logger.info(
                "Periodic %s: enqueued %s for %s",
                schedule.name,
                result.id,
                datetime_at(slot, schedule.tz).isoformat(),
            )

    def _task(self, schedule: Schedule) -> Task:
        task = self._tasks.get(schedule.name)
        if task is None:
            task = self._tasks[schedule.name] = self.backend.import_task(schedule.task_path)
        return task


def start_scheduler_thread(
    backend: SQLiteBackend, is_stopping: Callable[[], bool]
) -> threading.Thread | None:
    """Enqueue ``backend``'s periodic tasks from a daemon thread of this process (``runserver``
    autorun) until ``is_stopping()``; a bad schedule is logged, not raised, so the server runs."""
    try:
        schedules = load_schedules(backend)
    except ConfigurationError as exc:
        logger.error("litetasks: periodic tasks are off: %s", exc)
        return None
    if not schedules:
        return None
    scheduler = Scheduler(backend, schedules)

    def loop() -> None:
        wait = 0.0
        while not is_stopping():
            if wait <= 0:
                wait = scheduler.tick() + 0.002
            step = min(wait, 0.5)  # notice a stop within half a second
            time.sleep(step)
            wait -= step

    thread = threading.Thread(target=loop, name=f"litetasks-periodic-{backend.alias}", daemon=True)
    thread.start()
    return thread
