"""Attempts in flight inside one worker process: handed from whoever ran them to the dispatcher."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .._store.records import ErrorRecord, JobRecord, Outcome
from .._store.store import wall_clock_us

__all__ = ["Done", "Finish", "interrupted", "reraise"]

Finish = Callable[[bool], None]
"""Called with whether the outcome was recorded; sends ``task_finished`` if it was."""


@dataclass
class Done:
    """A finished attempt, handed from an executor to the dispatcher to be recorded."""

    outcome: Outcome
    finish: Finish
    recorded: threading.Event = field(default_factory=threading.Event)
    settled: bool = False
    on_recorded: Callable[[], None] | None = None  # for async tasks: wakes their event loop


def reraise(exc: BaseException) -> Finish:
    def finish(settled: bool) -> None:
        raise exc

    return finish


def interrupted(job: JobRecord, worker_id: str, exc: BaseException) -> Outcome:
    now = wall_clock_us()
    return Outcome(
        job_id=job.job_id,
        worker_id=worker_id,
        attempt=job.attempts,
        started_at_us=job.last_attempted_at_us or now,  # the claim time: the best we know
        finished_at_us=now,
        error=ErrorRecord.from_exception(exc),
    )
