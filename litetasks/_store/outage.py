"""While the queue file keeps failing: back off, log a few clear lines (not a traceback per try),
and tell a damaged file (stop) from one that may come back (a full disk, a lock: retry).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import apsw

from ..exceptions import StoreError

__all__ = ["Outage", "is_damage"]

logger = logging.getLogger(__name__)

# SQLite errors that mean the file no longer holds a queue: retrying cannot help.
_DAMAGE = (apsw.CorruptError, apsw.NotADBError)


def is_damage(exc: StoreError) -> bool:
    """Whether ``exc`` says the queue file is corrupt or not a database any more."""
    return isinstance(exc.__cause__, _DAMAGE)


class Outage:
    """Back-off and rate-limited logging for one loop that uses the queue file.

    ``failed()`` after each failed try returns how long to pause (doubling from ``first_s``
    up to ``max_s``) and logs the error at once, then at most every ``log_every_s`` (or when
    the error changes); ``recovered()`` after a success logs once that the file works again.
    """

    def __init__(
        self,
        what: str,
        *,
        first_s: float = 0.5,
        max_s: float = 5.0,
        log_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.first_s = first_s
        self.max_s = max_s
        self.log_every_s = log_every_s
        self._clock = clock
        self.since: float | None = None
        self.tries = 0
        self._next_log = 0.0
        self._last = ""

    def failed(self, exc: StoreError) -> float:
        """Count one failed try, log if due; return the pause before the next try (seconds)."""
        now = self._clock()
        message = str(exc)
        if self.since is None:
            self.since, self.tries = now, 0
            logger.error("%s failed: %s Retrying with back-off.", self.what, message)
            self._next_log = now + self.log_every_s
        elif now >= self._next_log or message != self._last:
            logger.error(
                "%s still failing after %.0f s (%d tries): %s",
                self.what,
                now - self.since,
                self.tries + 1,
                message,
            )
            self._next_log = now + self.log_every_s
        self._last = message
        self.tries += 1
        return float(min(self.max_s, self.first_s * 2 ** min(self.tries - 1, 16)))

    def recovered(self) -> None:
        """Note a successful try; logs once if the file had been failing."""
        if self.since is None:
            return
        logger.warning(
            "%s works again after %.1f s (%d failed tries)",
            self.what,
            self._clock() - self.since,
            self.tries,
        )
        self.since, self.tries, self._last = None, 0, ""
