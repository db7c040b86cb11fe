"""How many of a worker process's executor threads take jobs at once.

A process has ``threads`` executors so that tasks which wait (network, disk, ``sleep``) overlap:
while one waits, another runs. Tasks that compute hold the GIL instead, and a second thread
running Python only takes turns with the first; worse, the thread writing the next transaction
gives up the GIL at every SQLite step and then waits for it (up to the interpreter's switch
interval, 5 ms) behind busy executors. Measured on 2 cores with no-op tasks: one process drained
12,000 tasks/s with 1 thread and 9,100/s with 4; two processes 22,300/s with 1 thread each and
17,700/s with 4 (the default pool).

So executors take *turns*, as many at once as keep the GIL busy (at least one, at most
``threads``). For each number ``k`` of tasks running at once, the gate keeps a running average
of how much of the GIL they used: a task's thread CPU time over its wall time, times the
average number of tasks that ran beside it (itself included). ``k`` tasks that left the GIL
partly idle tell how much one task uses; ``k`` tasks that kept it busy say more would not help,
and the gate then tries ``k - 1``. A pool starts with every turn open and narrows as it learns;
what it learnt is forgotten after a while, so a change of workload is noticed. With turns, the
same machine drains 10,600/s with 1 process x 4 threads and 21,000/s with the default pool, and
tasks that wait (``sleep``, or half computing and half waiting) run as fast as without turns.

What looks like waiting to the gate: time the OS keeps a thread off the CPU (a machine busy with
other processes), and the GIL's own hand-overs when tasks give it up very often (thousands of
tiny system calls). There the turns stay open, which is how the pool ran before it had them.

No task waits long behind a slow one: when every turn's current task has run ``OVERDUE_S``,
one more executor is let in (and gives its turn back after its task if turns are short). Long
tasks therefore overlap on every thread, as they would without turns.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

__all__ = ["OVERDUE_S", "Gate", "Turn", "gil_enabled"]

# A task running this long lets one more executor in.
OVERDUE_S = 0.01
# Holders that waited for work this long mean the pool is idle: waiters then sleep until a
# holder starts a task (which wakes them), instead of looking again every OVERDUE_S.
_IDLE_S = 0.1
# One task in this many has its CPU time measured: reading a thread's CPU clock is a system
# call (no vDSO), about 0.6 µs, and showed as 15 % of a no-op task's GIL time under load.
# Tasks that take longer than _MEASURE_ALWAYS_S are all measured (so that the pool adapts as
# fast as their number allows).
_MEASURE_EVERY = 8
_MEASURE_ALWAYS_S = 0.0001
# Weight of the newest measurement in a running average of how much of the GIL tasks use.
_WEIGHT = 0.2
# Tasks using this much of the GIL between them keep it busy.
_SATURATED = 0.9
_MARGIN = 1.25
# What was measured with some number of tasks running is forgotten after this many newer
# measurements (about 1,600 short tasks, or 200 long ones).
_FORGET_AFTER = 200


def gil_enabled() -> bool:
    """Whether this interpreter runs with a GIL; a free-threaded build (3.13t) may run without
    one, and then threads compute side by side and need no turns."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


class Turn:
    """An executor's right to take jobs.

    ``busy_since`` is when its executor started its current task or, between tasks, finished
    the last one; None while it waits for work (since ``idle_since``).
    """

    __slots__ = ("area_at", "busy_since", "idle_since", "in_task", "last_wall_s", "tasks")

    def __init__(self, now: float) -> None:
        self.busy_since: float | None = now
        self.idle_since = 0.0
        self.in_task = False
        self.area_at = 0.0  # Gate._area when the current task started
        self.tasks = 0
        self.last_wall_s = 0.0


class Gate:
    """Hands out turns to ``threads`` executors; see the module docstring."""

    def __init__(self, threads: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.threads = threads
        self._clock = clock
        self.turns = threads  # how many executors may hold a turn, overdue ones aside
        # Per number of tasks running at once (1..threads): how much of the GIL they used
        # (a running average), and when that was last measured (a count of measurements).
        self._used = [0.0] * (threads + 1)
        self._seen_at = [-_FORGET_AFTER - 1] * (threads + 1)
        self._measured = 0
        self._holders: list[Turn] = []
        self._changed = threading.Condition(threading.Lock())
        self._waiting_untimed = 0  # waiters that sleep until a holder starts a task
        # The integral of the number of running tasks over time (task-seconds), up to
        # _area_until: a task's share of it over its run is how many ran beside it.
        self._area = 0.0
        self._area_until = self._clock()
        self._open = False

    @property
    def holders(self) -> int:
        return len(self._holders)

    def enter(self) -> Turn:
        """Wait for a turn and take it."""
        with self._changed:
            while not self._open and len(self._holders) >= self.turns:
                # Count this wait as untimed before reading the holders: a holder sets
                # busy_since before it reads _waiting_untimed (started()), so one of the two
                # sees the other's write (the GIL orders them).
                self._waiting_untimed += 1
                now = self._clock()
                busy = [t.busy_since for t in self._holders if t.busy_since is not None]
                if len(busy) < len(self._holders):  # a holder waits for work: it takes the next
                    idle_since = max(t.idle_since for t in self._holders if t.busy_since is None)
                    if now - idle_since >= _IDLE_S:
                        try:
                            self._changed.wait()
                        finally:
                            self._waiting_untimed -= 1
                        continue
                    # Holders idle briefly between claims under load: look again soon rather
                    # than have every task they start wake this thread.
                    self._waiting_untimed -= 1
                    self._changed.wait(OVERDUE_S)
                    continue
                self._waiting_untimed -= 1
                left = max(busy) + OVERDUE_S - now
                if left <= 0:
                    break  # every holder's task has run OVERDUE_S: one more executor
                self._changed.wait(left)
            turn = Turn(self._clock())
            self._holders.append(turn)
            return turn

    def started(self, turn: Turn) -> bool:
        """``turn``'s executor starts a task; return whether to measure its CPU time."""
        now = self._clock()
        self._account(now)
        turn.area_at = self._area
        turn.in_task = True
        turn.busy_since = now
        if self._waiting_untimed:
            with self._changed:
                self._changed.notify_all()
        turn.tasks += 1
        return turn.last_wall_s >= _MEASURE_ALWAYS_S or turn.tasks % _MEASURE_EVERY == 1

    def idle(self, turn: Turn) -> None:
        """``turn``'s executor waits for work."""
        turn.idle_since = self._clock()
        turn.busy_since = None

    def finished(self, turn: Turn, cpu_s: float | None, wall_s: float) -> bool:
        """``turn``'s task ran ``wall_s``, ``cpu_s`` of it on its thread's CPU (None: not
        measured). Return whether the executor keeps its turn; if not, it is given back."""
        now = self._clock()
        self._account(now)
        if cpu_s is not None and wall_s > 0 and turn.busy_since is not None:
            span = now - turn.busy_since
            beside = (self._area - turn.area_at) / span if span > 0 else 1.0
            self._learn(max(1.0, beside), cpu_s / wall_s)
        turn.in_task = False
        turn.busy_since = now
        turn.last_wall_s = wall_s
        wanted = self.turns
        if cpu_s is not None:
            wanted = self._wanted()
        if wanted == self.turns and len(self._holders) <= wanted:
            return True
        with self._changed:
            self.turns = wanted
            self._changed.notify_all()
            if self._open or len(self._holders) <= wanted:
                return True
            self._holders.remove(turn)
            return False

    def _account(self, now: float) -> None:
        """Add the tasks running since the last start or finish to the running total.

        Not under a lock: two threads racing here lose a sliver of the total, which only
        blurs an estimate.
        """
        running = sum(1 for turn in self._holders if turn.in_task)
        self._area += running * (now - self._area_until)
        self._area_until = now

    def _learn(self, beside: float, share: float) -> None:
        """Fold in one task that had ``beside`` tasks running on average (itself included)
        and spent ``share`` of its time on its thread's CPU."""
        level = min(self.threads, max(1, round(beside)))
        used = min(1.0, share * beside)  # of the GIL, by all the tasks running with it
        self._measured += 1
        if self._seen_at[level] < self._measured - _FORGET_AFTER:
            self._used[level] = used  # the first, or what was known is stale
        else:
            self._used[level] += _WEIGHT * (used - self._used[level])
        self._seen_at[level] = self._measured

    def _wanted(self) -> int:
        """How many turns the GIL needs, from what each number of running tasks used of it.

        ``k`` tasks that left it idle part of the time say how much one task uses (``f``):
        ``1 / f`` keep it busy. ``k`` tasks that kept it busy say that more would not help,
        but not whether fewer would: with nothing known below ``k``, try ``k - 1`` (knowledge
        is forgotten after _FORGET_AFTER measurements, so tasks that change get another try).
        """
        fresh = [
            (level, self._used[level])
            for level in range(1, self.threads + 1)
            if self._seen_at[level] >= self._measured - _FORGET_AFTER
        ]
        busy = [level for level, used in fresh if used >= _SATURATED]
        roomy = [(level, used) for level, used in fresh if used < _SATURATED]
        if roomy:
            level, used = max(roomy)  # most tasks at once: the least blurred by the OS
            # A quarter more than would just fill it: tasks do not alternate like clockwork.
            wanted = int(level / max(used, 1e-3) * _MARGIN + 0.5)
            if busy:
                wanted = min(wanted, *busy)
        elif busy:
            wanted = min(busy) - 1
        else:
            return self.turns
        return min(self.threads, max(1, wanted))

    def leave(self, turn: Turn) -> None:
        """Give ``turn`` back (its executor stops)."""
        with self._changed:
            if turn in self._holders:
                self._holders.remove(turn)
            self._changed.notify()

    def open(self) -> None:
        """Let every executor in from now on (the pool is stopping: each must see its end)."""
        with self._changed:
            self._open = True
            self._changed.notify_all()
