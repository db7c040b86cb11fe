"""When to replace a worker process that exited: per slot after a crash, and pool-wide.

A worker that exits at once, whatever the reason (it takes its supervisor for dead, its code
fails to import, its queue file is unusable), would otherwise be replaced at once, forever:
hundreds of processes a second, a core burnt, and nothing run. Replacing a whole pool at once is
normal (every process reaching ``max_tasks_per_child`` together); more exits than that within
``WINDOW_S`` is a storm, and the next replacements wait, longer and longer.
"""

from __future__ import annotations

import collections
import logging
import signal

__all__ = ["RestartLimit", "describe_exit"]

logger = logging.getLogger(__name__)

WINDOW_S = 2.0
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0


class RestartLimit:
    """Decide when the replacement of an exited worker starts.

    A slot whose worker crashed waits 0.5 s, 1 s, 2 s ... 30 s as it crashes again and again,
    and starts afresh once a worker of it lived ``MAX_DELAY_S``. Across the pool, up to
    ``budget`` workers may exit within ``WINDOW_S`` and be replaced at once; past that, each
    replacement waits twice as long as the previous one (0.5 s ... 30 s) until a worker lives
    ``WINDOW_S`` or longer: then the storm is over.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._exits: collections.deque[float] = collections.deque()
        self._delay_s = 0.0
        self._storm_since = 0.0  # when the first exit of the storm (if one) happened
        self._storm_exits = 0

    def plan(
        self, now: float, *, pid: int, code: int, lived_s: float, crashes: int | None
    ) -> tuple[float, int]:
        """Return when (monotonic) to replace worker ``pid``, and its slot's crashes in a row.

        ``code`` is its exit code; ``crashes`` the crashes in a row of its slot before, or None
        if it exited as a worker may (recycled, or stopped by a signal of its own).
        """
        crashed = crashes is not None
        if crashes is None:
            crashes, delay = 0, 0.0
        else:
            crashes = 0 if lived_s > MAX_DELAY_S else crashes + 1
            delay = 0.0 if crashes == 0 else min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (crashes - 1))
        throttle = self.delay_for(now, lived_s)
        if throttle > delay:
            exits, span_s = self._storm_exits, now - self._storm_since
            logger.warning(
                "Workers are exiting as fast as they start (%d in the last %.1f s, last: "
                "pid=%d, %s after %.1f s); restarting the next in %.1f s",
                exits,
                span_s,
                pid,
                describe_exit(code),
                lived_s,
                throttle,
            )
        elif crashed:
            logger.error(
                "Worker pid=%d exited with code %d after %.1f s; restarting in %.1f s",
                pid,
                code,
                lived_s,
                delay,
            )
        return now + max(delay, throttle), crashes

    def delay_for(self, now: float, lived_s: float) -> float:
        """Record an exit at ``now`` (monotonic) of a worker that lived ``lived_s``; return
        how long the pool's rate makes its replacement wait (0: not at all)."""
        self._exits.append(now)
        while self._exits and self._exits[0] <= now - WINDOW_S:
            self._exits.popleft()
        if lived_s >= WINDOW_S:
            self._delay_s = 0.0
        if not self._delay_s and len(self._exits) <= self.budget:
            return 0.0
        if not self._delay_s:
            self._storm_since, self._storm_exits = self._exits[0], len(self._exits) - 1
        self._storm_exits += 1
        self._delay_s = min(MAX_DELAY_S, max(FIRST_DELAY_S, 2 * self._delay_s))
        return self._delay_s


def describe_exit(code: int) -> str:
    """Say how a process ended, from ``os.waitstatus_to_exitcode``: "exit code 1", "SIGKILL"."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"
