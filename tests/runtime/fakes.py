"""Fakes for unit tests of the runtime's collaborators: a clock and finished attempts."""

from __future__ import annotations

from litetasks._runtime.attempts import Done
from litetasks._store.records import Outcome


class Clock:
    """A monotonic clock that moves only when a test moves it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def done(job_id: str = "j", *, run_s: float = 0.1, coroutine: bool = False) -> Done:
    """A finished attempt that ran ``run_s``; ``coroutine``: a coroutine task's (its event loop
    waits to be told it was recorded)."""
    outcome = Outcome(
        job_id=job_id,
        worker_id="w1",
        attempt=1,
        started_at_us=1_000_000,
        finished_at_us=1_000_000 + int(run_s * 1_000_000),
        return_json="null",
    )
    return Done(outcome, lambda counted: None, on_recorded=(lambda: None) if coroutine else None)
