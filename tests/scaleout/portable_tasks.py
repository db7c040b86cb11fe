"""A realistic tasks module written for litetasks in the portable form (``litetasks.options``
under ``@task``): it must import and run unchanged on every backend the scale-out tests use.

Each task appends one line per run (``name json(args)``) to ``runs.log`` in the folder it is
given, so a test can count runs made by a worker in another process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import litetasks
from litetasks import enqueue_many, fixed

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task  # type: ignore[no-redef]


def record(folder: str, name: str, *args: Any) -> None:
    """Append one line for this run; O_APPEND keeps lines of concurrent workers whole."""
    line = f"{name} {json.dumps(list(args), sort_keys=True)}\n".encode()
    fd = os.open(Path(folder) / "runs.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def runs(folder: str) -> list[str]:
    """The lines ``record`` wrote into ``folder``, in order."""
    path = Path(folder) / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


@task
def report_failure(result_id: str) -> None:
    """A completion hook: litetasks enqueues it with the failed task's id."""


@task
def send_welcome(folder: str, user_id: int, lang: str = "en") -> str:
    record(folder, "send_welcome", user_id, lang)
    return f"welcome {user_id} {lang}"


@task(queue_name="emails")
@litetasks.options(
    max_attempts=3, backoff=fixed(0), timeout=60, unique=True, on_failure=report_failure
)
def sync_account(folder: str, account_id: int) -> int:
    record(folder, "sync_account", account_id)
    return account_id * 2


@task(priority=10)
@litetasks.options(max_attempts=2)
def build_report(folder: str, month: str, *, pages: int = 1) -> dict[str, Any]:
    record(folder, "build_report", month, pages)
    return {"month": month, "pages": pages}


@task
def fan_out(folder: str, user_ids: list[int]) -> int:
    """Enqueue one welcome per user, through whatever backend this task runs on."""
    enqueue_many(send_welcome, [(folder, user_id) for user_id in user_ids])
    return len(user_ids)


@task
@litetasks.options(max_attempts=3, backoff=fixed(2))
def charge(folder: str, order_id: int) -> str:
    """Fail the first attempt (as a flaky payment API does), then succeed."""
    marker = Path(folder) / f"charge-{order_id}-failed-once"
    if not marker.exists():
        marker.touch()
        raise ConnectionError("payment API timed out")
    record(folder, "charge", order_id)
    return f"charged {order_id}"
