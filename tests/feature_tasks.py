"""Tasks with litetasks' options (``LiteTask``), for the tests of the features beyond DEP 0014.

Tasks count their attempts in files under a folder the test passes, so a worker in another
thread or process can be observed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from litetasks import fixed

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task  # type: ignore[no-redef]

BACKOFF_CALLS: list[tuple[str, int]] = []  # (exception class name, attempt) per backoff call


def _attempt(folder: str) -> int:
    """Count one more attempt in ``folder``; return its number (1 for the first)."""
    marks = Path(folder)
    number = len(list(marks.glob("attempt-*"))) + 1
    (marks / f"attempt-{number}").touch()
    return number


@task(max_attempts=3, backoff=fixed(0))
def flaky(folder: str, failures: int) -> int:
    """Fail the first ``failures`` attempts, then return the attempt number."""
    number = _attempt(folder)
    if number <= failures:
        raise ConnectionError(f"attempt {number} failed")
    return number


@task(max_attempts=2, backoff=fixed(0))
def always_fails(folder: str) -> None:
    raise ValueError(f"attempt {_attempt(folder)} failed")


def _no_retry_for_key_errors(exc: BaseException, result: Any) -> float | None:
    BACKOFF_CALLS.append((type(exc).__name__, len(result.worker_ids)))
    return None if isinstance(exc, KeyError) else 0


@task(max_attempts=5, backoff=_no_retry_for_key_errors)
def fails_with(folder: str, kind: str) -> None:
    _attempt(folder)
    raise {"key": KeyError, "value": ValueError}[kind]("no")


@task(max_attempts=5, backoff=fixed(0), no_retry_on=(PermissionError,))
def fails_with_permission(folder: str) -> None:
    _attempt(folder)
    raise PermissionError("never retried")


@task(max_attempts=5, backoff=fixed(0), retry_on=(ConnectionError,))
def fails_with_type_error(folder: str) -> None:
    _attempt(folder)
    raise TypeError("only ConnectionError is retried")


@task(max_attempts=3, backoff=fixed(0.3))
def slow_retry(folder: str) -> int:
    number = _attempt(folder)
    if number < 3:
        raise ConnectionError("again")
    return number


@task
def hook_record(result_id: str) -> str:
    """A hook: receives the finished task's id."""
    return result_id


@task(on_success=hook_record)
def with_success_hook(value: int) -> int:
    return value


@task(max_attempts=2, backoff=fixed(0), on_failure=hook_record, on_finish=hook_record)
def with_failure_hooks(folder: str) -> None:
    raise ValueError(f"attempt {_attempt(folder)}")


@task(unique=True)
def unique_by_arguments(a: int, b: int = 0) -> int:
    return a + b


@task(unique=lambda account_id, **kwargs: str(account_id))
def unique_by_account(account_id: int, note: str = "") -> str:
    return note


def _spin(seconds: float) -> None:
    """Busy-wait in Python bytecode (interruptible), unlike time.sleep (blocked in C)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@task(timeout=0.5)
def spins(seconds: float) -> str:
    _spin(seconds)
    return "finished"


@task(timeout=0.5, max_attempts=2, backoff=fixed(0))
def spins_twice(folder: str, seconds: float) -> str:
    _attempt(folder)
    _spin(seconds)
    return "finished"


@task(timeout=0.5)
def sleeps_in_c(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


@task
def spins_until_cancelled(folder: str, seconds: float) -> str:
    _attempt(folder)
    _spin(seconds)
    return "finished"


@task(timeout=0.5)
async def sleeps_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@task
async def sleeps_async_until_cancelled(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@task(timeout=0.5)
def swallows_everything(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            _spin(end - time.monotonic())
        except BaseException:  # a task that refuses to stop
            continue
    return "finished"
