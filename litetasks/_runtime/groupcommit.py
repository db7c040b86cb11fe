"""Group commit: outcomes wait to be written together, with the next claim.

A finished attempt's outcome waits at most ``GROUP_WINDOW_S`` to be written with others in one
transaction (one commit, one fsync), and at most ``GROUP_MAX`` outcomes wait. They are written
at once when the executors run short of work (the same transaction claims more), when a claimed
job goes back unstarted, and when the pool stops. ``task_finished`` is sent once the outcome is
written. Executors write their own groups when due; the dispatcher steps in for outcomes that
waited ``BACKSTOP_S`` (those of tasks finished just before a long one started). Outcomes of
coroutine tasks wait for the dispatcher: their event loop does not write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .attempts import Done

__all__ = ["BACKSTOP_S", "GROUP_MAX", "GROUP_WINDOW_S", "GroupCommit", "Handed"]

GROUP_WINDOW_S = 0.002
GROUP_MAX = 64
BACKSTOP_S = 0.05


@dataclass(frozen=True, slots=True)
class Handed:
    """What handing something to the group means: ``due``, write now; ``first``, nothing
    waited before it (so the dispatcher must learn that something waits)."""

    first: bool
    due: bool


# The four answers of ``GroupCommit.add``, built once: it runs once per task.
_HANDED = {
    (first, due): Handed(first=first, due=due) for first in (False, True) for due in (False, True)
}


class GroupCommit:
    """Outcomes waiting to be written and claimed jobs waiting to go back; safe from any
    thread."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Guards _done, _returned and _first_at: executors and the event loop add, whoever
        # writes the transaction takes.
        self._lock = threading.Lock()
        self._done: list[Done] = []
        self._returned: list[str] = []  # claimed, never started: the pool is stopping
        self._first_at = 0.0  # when the oldest outcome in _done was handed over

    def add(self, *, done: Done | None = None, returned: str | None = None) -> Handed:
        """Hand over a finished attempt or a job to put back."""
        now = self._clock()
        with self._lock:
            first = not self._done and not self._returned
            if done is not None:
                if not self._done:
                    self._first_at = now
                self._done.append(done)
            if returned is not None:
                self._returned.append(returned)
            due = (
                returned is not None
                or len(self._done) >= GROUP_MAX
                or (bool(self._done) and now - self._first_at >= GROUP_WINDOW_S)
            )
        return _HANDED[first, due]

    def take(self) -> tuple[list[Done], list[str]]:
        """Everything waiting, to write now."""
        with self._lock:
            done, self._done = self._done, []
            returned, self._returned = self._returned, []
        return done, returned

    def give_back(self, done: Sequence[Done], returned: Sequence[str] = ()) -> None:
        """Keep what could not be written for the next try (idempotent)."""
        with self._lock:
            kept = {id(item) for item in self._done}
            self._done[:0] = [d for d in done if not d.recorded.is_set() and id(d) not in kept]
            self._returned[:0] = [job_id for job_id in returned if job_id not in self._returned]

    def waiting(self) -> list[Done]:
        """The outcomes waiting now (a copy)."""
        with self._lock:
            return list(self._done)

    def count(self) -> int:
        """How many outcomes and jobs to put back wait."""
        with self._lock:
            return len(self._done) + len(self._returned)

    def due_in(
        self, *, stopping: bool, inline: bool, hungry: Callable[[list[Done]], bool]
    ) -> float | None:
        """Seconds until the next transaction is due: 0 for now, None when none is.

        ``inline``: asked by an executor, which writes outcomes after ``GROUP_WINDOW_S``;
        the dispatcher writes those that executors will write themselves only after
        ``BACKSTOP_S``. ``hungry(waiting)``: whether executors are short of work (then a
        transaction is due to claim more); not asked of a stopping pool.
        """
        with self._lock:
            waiting, first_at, returning = list(self._done), self._first_at, bool(self._returned)
        pending = len(waiting)
        if returning or (pending and (stopping or pending >= GROUP_MAX)):
            return 0.0
        if not stopping and hungry(waiting):
            return 0.0
        if not pending:
            return None
        waits_for_dispatcher = inline or any(d.on_recorded is not None for d in waiting)
        limit = GROUP_WINDOW_S if waits_for_dispatcher else BACKSTOP_S
        return max(0.0, first_at + limit - self._clock())
