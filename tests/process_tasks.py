"""Tasks for the process-level tests: forking tasks, orphaned subprocesses, pid namespaces."""

from __future__ import annotations

import os
import subprocess

from litetasks import fixed
from tests.tasks import tracked

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task  # type: ignore[no-redef]


def _append(path: str, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"{line} {os.getpid()}\n")


@task
def fork_and_return(path: str) -> int:
    """Fork; both processes append ``<parent|child> <pid>`` to ``path`` and return their pid.

    The parent does not wait for the child: a task that forbids this cannot be tested.
    """
    role = "child" if os.fork() == 0 else "parent"
    _append(path, role)
    return os.getpid()


@task
def fork_and_raise_in_child(path: str) -> int:
    """Fork; the child appends its line and raises, the parent appends its line and returns."""
    role = "child" if os.fork() == 0 else "parent"
    _append(path, role)
    if role == "child":
        raise RuntimeError("raised in the forked child")
    return os.getpid()


@task
async def fork_and_return_async(path: str) -> int:
    """``fork_and_return`` in a coroutine (on the worker's event loop)."""
    role = "child" if os.fork() == 0 else "parent"
    _append(path, role)
    return os.getpid()


@task
def leave_orphan(seconds: float) -> int:
    """Start ``sleep seconds`` through a shell that exits at once: the sleep is orphaned (its
    parent is gone) and the kernel hands it to the nearest reaper. Return the shell's pid."""
    shell = subprocess.run(
        ["sh", "-c", f"sleep {seconds} >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(shell.stdout)


@task(max_attempts=3, backoff=fixed(0))
def tracked_with_retries(path: str, line: str, sleep_s: float = 0.0) -> int:
    """``tests.tasks.tracked`` with attempts to spare: recovered as lost, it runs again."""
    return int(tracked.func(path, line, sleep_s))
