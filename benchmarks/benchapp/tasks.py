"""Task bodies shared by every Django-side system; ``benchmarks.hueyapp`` mirrors them for huey."""

from __future__ import annotations

import time

from django.tasks import task

from benchmarks.measure import note_arrival


@task  # type: ignore[untyped-decorator]  # Django ships no type information
def noop() -> None:
    """Do nothing: what is left to measure is the queue."""


@task  # type: ignore[untyped-decorator]  # Django ships no type information
def record(user_id: int, action: str, data: dict[str, object]) -> int:
    """What a site enqueues: an id, a short string and a small dict; returns a small value."""
    return user_id + len(action) + len(data)


@task  # type: ignore[untyped-decorator]  # Django ships no type information
def stamp() -> int:
    """Return the wall-clock time at which the task body started, in nanoseconds."""
    return time.time_ns()


@task  # type: ignore[untyped-decorator]  # Django ships no type information
def arrive(sent_ns: int, user_id: int, action: str, data: dict[str, object]) -> int:
    """``record`` that notes when it started (``benchmarks.sustained``)."""
    note_arrival(sent_ns)
    return user_id + len(action) + len(data)
