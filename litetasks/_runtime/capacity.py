"""How much work a worker pool has out, and how much more it claims.

A pool claims one job per idle executor plus some queued ahead: queued jobs let an executor
start its next task without waiting for a commit, and let one commit record many outcomes. How
many depends on how long tasks take: enough to cover about ``PREFETCH_WINDOW_S`` of work, at
least ``prefetch``, at most ``PREFETCH_MAX``. Slow tasks get no more than ``prefetch``, so they
are not hoarded while other processes idle. Coroutine tasks run on the event loop, not on
executors, up to ``ASYNC_CONCURRENCY`` at once. A pool that recycles after
``max_tasks_per_child`` never claims past it. Executors ask for more work when the jobs queued
for them fall to the *low-water mark*, half of what is claimed ahead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from .attempts import Done

__all__ = ["ASYNC_CONCURRENCY", "PREFETCH_MAX", "PREFETCH_WINDOW_S", "Capacity"]

# Claim ahead enough short tasks to cover this much work, never more than PREFETCH_MAX jobs.
PREFETCH_WINDOW_S = 0.005
PREFETCH_MAX = 64
# Coroutine tasks share one event loop per process; this many may be in flight at once.
ASYNC_CONCURRENCY = 100
# Weight of the newest group in the moving average of task run time.
_WEIGHT = 0.2


class Capacity:
    """The pool's count of claimed jobs and its claim-ahead rule; safe from any thread."""

    def __init__(self, *, threads: int, prefetch: int, max_tasks_per_child: int | None) -> None:
        self.threads = threads
        self.prefetch = prefetch
        self.max_tasks_per_child = max_tasks_per_child
        # Guards every field below: the dispatcher, executors writing inline and the status
        # checks of a stopping pool read and write them from different threads.
        self._lock = threading.Lock()
        self._busy = 0  # claimed jobs not recorded or released yet (coroutines included)
        self._in_flight = 0  # of those, coroutine tasks (on the event loop)
        self._claimed = 0  # jobs claimed in all, for max_tasks_per_child
        self._task_s = 0.1  # moving average of task run time; starts pessimistic
        self._low_water = 0  # executors want more work at this many queued jobs

    @property
    def busy(self) -> int:
        with self._lock:
            return self._busy

    @property
    def claimed(self) -> int:
        with self._lock:
            return self._claimed

    @property
    def low_water(self) -> int:
        with self._lock:
            return self._low_water

    def free_slots(self, recording: Sequence[Done]) -> int:
        """How many more jobs to claim; ``recording``: outcomes about to be recorded (their
        slots are free)."""
        with self._lock:
            return self._free_slots(recording)

    def hungry(self, queued: int, recording: Sequence[Done]) -> bool:
        """Whether executors with ``queued`` jobs waiting for them are short of work (so a
        claim is worth a commit)."""
        with self._lock:
            return queued <= self._low_water and self._free_slots(recording) > 0

    def running_short(self, queued: int) -> bool:
        """Whether ``queued`` jobs waiting for executors is down to the low-water mark."""
        with self._lock:
            return queued <= self._low_water

    def handed_out(self, *, sync: int, coroutines: int) -> None:
        """Claimed jobs went to executors (``sync``) and the event loop (``coroutines``)."""
        with self._lock:
            self._claimed += sync + coroutines
            self._busy += sync + coroutines
            self._in_flight += coroutines

    def released(self, count: int) -> None:
        """Claimed jobs went back to READY unstarted."""
        with self._lock:
            self._busy -= count

    def recorded(self, done: Sequence[Done]) -> None:
        """Outcomes were recorded: their slots are free; learn how long tasks take."""
        if not done:
            return
        run_s = sum(d.outcome.finished_at_us - d.outcome.started_at_us for d in done) / 1e6
        with self._lock:
            self._busy -= len(done)
            self._in_flight -= _coroutines(done)
            mean_s = max(run_s / len(done), 1e-6)
            self._task_s = (1 - _WEIGHT) * self._task_s + _WEIGHT * mean_s

    def nothing_runs(self, waiting: int) -> bool:
        """Whether no task runs: every claimed job is among ``waiting`` (outcomes and jobs
        waiting to be written)."""
        with self._lock:
            return self._busy - waiting - self._in_flight <= 0 and not self._in_flight

    def _free_slots(self, recording: Sequence[Done]) -> int:
        ahead = max(
            self.prefetch,
            min(int(PREFETCH_WINDOW_S / self._task_s) * self.threads, PREFETCH_MAX),
        )
        self._low_water = ahead // 2
        in_flight = self._in_flight - _coroutines(recording)
        running = self._busy - len(recording) - in_flight  # executors' jobs, queued or running
        free = min(self.threads + ahead - running, ASYNC_CONCURRENCY - in_flight)
        if self.max_tasks_per_child:  # never claim past the recycling limit
            free = min(free, self.max_tasks_per_child - self._claimed)
        return max(0, free)


def _coroutines(done: Sequence[Done]) -> int:
    return sum(1 for item in done if item.on_recorded is not None)
