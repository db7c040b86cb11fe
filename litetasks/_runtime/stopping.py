"""A pool's stop request: set once from any thread (signal handlers included), with a deadline."""

from __future__ import annotations

import threading
import time

__all__ = ["StopRequest"]


class StopRequest:
    """Whether the pool stops, and until when running tasks may finish (``grace_s``)."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.forced = False
        self._event = threading.Event()
        # Signal handlers call request() on the dispatcher's thread, between any two
        # bytecodes: a plain flag (not the event's lock) decides, and each field is written by
        # one assignment.
        self._requested = False
        self.deadline = 0.0  # time.monotonic() when the grace period ends

    def request(self, *, force: bool = False) -> None:
        if not self._requested:
            self._requested = True
            self.deadline = time.monotonic() + self.grace_s
            self._event.set()
        if force:
            self.forced = True
            self.deadline = time.monotonic()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float) -> bool:
        return self._event.wait(timeout_s)

    def left_s(self) -> float:
        """Seconds left of the grace period (negative once it is over)."""
        return self.deadline - time.monotonic()
