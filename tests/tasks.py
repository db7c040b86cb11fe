"""Module-level tasks the tests enqueue (workers import them by path)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any

from litetasks._django.compat import TaskContext

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task  # type: ignore[no-redef]


@task
def noop() -> None:
    return None


@task
async def noop_async() -> str:
    return "async"


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task
def fail_value_error(message: str = "boom") -> None:
    raise ValueError(message)


@task
def exit_task() -> None:
    raise SystemExit(3)


@task
def keyboard_interrupt() -> None:
    raise KeyboardInterrupt


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() failed")


@task
def fail_bad_str() -> None:
    raise BadStr


@task
def complex_return_value() -> object:
    return {"when": time}  # a module is not JSON


@task(takes_context=True)
def with_context(context: TaskContext) -> dict[str, Any]:
    return {"id": context.task_result.id, "attempt": context.attempt}


@task
def append_line(path: str, line: str, sleep_s: float = 0.0) -> str:
    """Record that this ran (for exactly-once checks), optionally after sleeping."""
    if sleep_s:
        time.sleep(sleep_s)
    with open(path, "a") as handle:
        handle.write(f"{line} {os.getpid()}\n")
    return line


@task
def write_pid_and_sleep(path: str, sleep_s: float) -> int:
    Path(path).write_text(str(os.getpid()))
    time.sleep(sleep_s)
    return os.getpid()


def undecorated() -> None:
    return None


@task(priority=10, queue_name="emails")
def send_email(to: str) -> str:
    return f"sent to {to}"


@task
def int_key_return() -> dict[int, str]:
    return {1: "one"}


@task
def tracked(path: str, line: str, sleep_s: float = 0.0) -> int:
    """Append ``<line> <pid>`` to ``<path>.started``, sleep, then append it to ``path``.

    One line per attempt in each file, so a test can kill or signal a task once it has started
    and count how often each task started and finished. A run that overlaps another run of the
    same ``line`` (an flock on ``<path>.<line>.lock``, released by the kernel when a process dies)
    also appends to ``<path>.concurrent``. Returns the pid that ran it.
    """
    with open(f"{path}.{line}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _append(f"{path}.concurrent", line)
        _append(f"{path}.started", line)
        if sleep_s:
            time.sleep(sleep_s)
        _append(path, line)
    return os.getpid()


def _append(path: str, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"{line} {os.getpid()}\n")


# What hold_memory allocated: kept until the process exits, as a leaking task would.
_HELD: list[bytes] = []


@task
def hold_memory(path: str, line: str, megabytes: int) -> int:
    """Allocate ``megabytes`` (every page written) and keep them; then append ``<line> <pid>``."""
    _HELD.append(b"\x01" * (megabytes * 1024 * 1024))
    _append(path, line)
    return os.getpid()


@task
async def async_sleep(seconds: float) -> float:
    """Sleep without holding a thread: many of these run at once on the worker's event loop."""
    import asyncio

    started = time.monotonic()
    await asyncio.sleep(seconds)
    return started


# What capture() received and what return_next() returns: for in-process runs (drain()) only.
RECEIVED: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
RETURNS: list[Any] = []


@task
def capture(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Keep the arguments exactly as received in ``RECEIVED``; return them."""
    RECEIVED.append((args, kwargs))
    return {"args": list(args), "kwargs": kwargs}


@task
def return_next() -> Any:
    """Return the first value of ``RETURNS`` as it is (not normalised): a test puts it there."""
    return RETURNS.pop(0)


@task
def grow(path: str, size: int) -> str:
    """Append ``grow <pid>`` to ``path``, then return a string of ``size`` characters."""
    _append(path, "grow")
    return "x" * size


@task
def fail_verbosely(size: int) -> None:
    """Raise a ``ValueError`` whose message (and so traceback) is ``size`` characters long."""
    raise ValueError("m" * size)


# How many ``overlapping`` tasks were running as each one started (itself included), in this
# process: in-process pools only.
OVERLAPS: list[int] = []
_running = [0]
_running_lock = threading.Lock()


@task
def overlapping(spin_s: float, sleep_s: float = 0.0) -> None:
    """Compute for ``spin_s`` of thread CPU time, then sleep ``sleep_s``; record in OVERLAPS."""
    with _running_lock:
        _running[0] += 1
        OVERLAPS.append(_running[0])
    try:
        end = time.thread_time() + spin_s
        while time.thread_time() < end:
            pass
        if sleep_s:
            time.sleep(sleep_s)
    finally:
        with _running_lock:
            _running[0] -= 1
