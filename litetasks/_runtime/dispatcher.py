"""The dispatcher: one transaction records finished attempts and claims work for all executors.

With one writer at a time per process there is no lock contention between threads, and commits
are grouped (``groupcommit.py``): under load one commit records and claims a task per thread. A
transaction is due when outcomes have waited long enough (or enough of them wait), when the
executors run short of queued work (``capacity.py``), when jobs go back at shutdown, and when
the pool stops. The dispatcher thread sleeps until an executor, a ring or the clock says
otherwise; an executor that finds a transaction due writes it itself (``write_inline``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection

from .._store.config import WorkerConfig
from .._store.outage import is_damage
from .._store.records import JobRecord
from .._store.store import Store
from ..exceptions import StoreError
from .attempts import Done
from .capacity import Capacity
from .groupcommit import BACKSTOP_S, GroupCommit
from .stopping import StopRequest
from .transactions import Transactions
from .wakeup import Waiter

__all__ = ["Dispatcher"]

logger = logging.getLogger(__name__)


class Dispatcher:
    """When to write a transaction, and who writes it: the dispatcher thread or an executor."""

    def __init__(
        self,
        *,
        config: WorkerConfig,
        transactions: Transactions,
        group: GroupCommit,
        capacity: Capacity,
        queued: Callable[[], int],
        stop: StopRequest,
        on_stop: Callable[[], None],
        on_idle: Callable[[], None],
        not_here: Callable[[], Collection[str]],
    ) -> None:
        self.config = config
        self.worker_id = transactions.worker_id
        self.waiter: Waiter | None = None  # set by the pool once it runs
        self.is_damaged = False  # written by the dispatcher thread only
        self._tx = transactions
        self._group = group
        self._capacity = capacity
        self._queued = queued
        self._stop = stop
        self._on_stop = on_stop
        self._on_idle = on_idle
        self._not_here = not_here

    def run(self, store: Store) -> None:
        """Write outcomes and claim work in one transaction, as seldom as the work allows;
        return once the pool is done."""
        assert self.waiter is not None
        waiter = self.waiter
        starved = False  # the last claim got less than it asked: wait before asking again
        while True:
            waiter.clear()
            write_in = self._due_in(starved)
            if write_in is None or write_in > 0:
                if not self._keep_going(None):
                    return
                if write_in is None:
                    write_in = self.wait_timeout(store, idle=not self._capacity.busy)
                waiter.wait(write_in)
                starved = False
                continue
            try:
                written = self._tx.write_if(store, functools.partial(self._due_now, starved))
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

    def hand_off(
        self, *, done: Done | None = None, returned: str | None = None, inline: Store | None = None
    ) -> None:
        """Take a finished attempt or a job to put back; see that a due transaction is written.

        A transaction is due on a job to put back, on a group of outcomes that is full or has
        waited long enough, and when the executors run short of queued work: an executor
        (``inline``: its store) writes it itself, anyone else wakes the dispatcher, also for
        the first outcome of a group (to write it when it has waited).
        """
        handed = self._group.add(done=done, returned=returned)
        due = handed.due or self._capacity.running_short(self._queued())
        if due and inline is not None:
            self._write_inline(inline)
        elif due or (handed.first and inline is None):
            self.wake()

    def wake(self) -> None:
        if self.waiter is not None:
            self.waiter.wake()

    def _write_inline(self, store: Store) -> None:
        """On an executor thread: write the due transaction now rather than wake the dispatcher.

        Waking it costs a thread switch and, while executors hold the GIL, up to the
        interpreter's switch interval (5 ms) before it runs: with short tasks the executors
        ran dry waiting for it. Whoever finds a transaction due writes it; the dispatcher
        keeps what needs waiting (back-off after failures, stopping, idle polls).
        """
        if self._stop.is_set():
            self.wake()
            return
        try:
            written = self._tx.write_if(
                store, functools.partial(self._due_now, False, inline=True), inline=True
            )
        except StoreError:
            written = [], 0  # kept; the dispatcher tries again, backing off
        if written is not None and not written[0]:
            self.wake()  # out of work, or failing: the dispatcher decides what comes next

    def _due_now(self, starved: bool, *, inline: bool = False) -> bool:
        return self._due_in(starved, inline=inline) == 0.0

    def _due_in(self, starved: bool, *, inline: bool = False) -> float | None:
        """Seconds until the next transaction is due: 0 for now, None when none is."""

        def hungry(waiting: list[Done]) -> bool:
            return not starved and self._capacity.hungry(self._queued(), waiting)

        return self._group.due_in(stopping=self._stop.is_set(), inline=inline, hungry=hungry)

    def _pause_after(self, exc: StoreError) -> bool:
        """Back off after a failed transaction; False when the pool should give up and stop.

        A damaged file stops the pool (running tasks get their grace period). A stopping pool
        gives up at the end of its grace period, or as soon as no task is running any more:
        what it could not record is logged at shutdown and recovered as lost later.
        """
        if is_damage(exc) and not self.is_damaged:
            self.is_damaged = True
            logger.error("Worker id=%s stops: %s", self.worker_id, exc)
            self._on_stop()
        pause = self._tx.failed(exc)
        if self._stop.is_set() and self._capacity.nothing_runs(self._group.count()):
            return False  # nothing runs: only outcomes wait, for a file that fails
        until = time.monotonic() + pause
        assert self.waiter is not None
        while (left := until - time.monotonic()) > 0:
            if self._stop.is_set():
                left = min(left, self._stop.left_s())
                if left <= 0:
                    return False
            self.waiter.clear()
            self.waiter.wait(left)
        return True

    def wait_timeout(self, store: Store, *, idle: bool) -> float:
        """How long the dispatcher sleeps when no transaction is due."""
        if self._stop.is_set():
            return max(0.0, min(0.1, self._stop.left_s()))
        timeout = self.config.poll_interval_s
        if not idle:
            # Executors may leave outcomes for the dispatcher without waking it (hand_off).
            return min(timeout, BACKSTOP_S)
        self._on_idle()
        try:
            # Not the tasks this worker leaves to others: due, they would keep it spinning.
            due = store.next_due_at(self.config.queues, skip=self._not_here())
        except StoreError:
            return timeout
        if due is not None:
            timeout = min(timeout, max(0.0, (due - store.now_us()) / 1_000_000))
        return timeout

    def _keep_going(self, claimed: list[JobRecord] | None) -> bool:
        """False when the dispatcher is done: stopped, or (burst) a claim found nothing to do.

        ``claimed`` is what the last transaction claimed, None if it did not try to.
        """
        if self._stop.is_set():
            # Done when nothing runs, or when the grace period is over (the pool releases).
            return self._capacity.busy > 0 and self._stop.left_s() > 0
        return not (self.config.burst and claimed == [] and self._capacity.busy == 0)
