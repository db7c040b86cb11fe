"""The huey instance and tasks under test; the same bodies as ``benchmarks.benchapp.tasks``.

Configured from the environment, as a Django project is by its settings module, because the
consumer imports this module by name (``huey_consumer benchmarks.hueyapp.huey``):

* ``BENCH_HUEY_PATH``: the SQLite file.
* ``BENCH_HUEY_SYNCHRONOUS``: ``NORMAL`` sets ``PRAGMA synchronous=NORMAL`` on every connection;
  anything else keeps SqliteHuey's default (it leaves the pragma alone, so FULL).
* ``BENCH_HUEY_EXPECT`` and ``BENCH_HUEY_WINDOW``: when set, the consumer writes the drain window
  of the ``record`` and of the ``noop`` tasks (first start, last finish, count, per task) as JSON
  to that file once that many of them finished in all.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from huey import SqliteHuey
from huey.signals import SIGNAL_COMPLETE, SIGNAL_EXECUTING

from benchmarks.measure import note_arrival

__all__ = ["arrive", "huey", "noop", "record", "stamp"]


class NormalSyncConnection(sqlite3.Connection):
    """A connection with ``synchronous=NORMAL``: SqliteHuey's ``fsync`` only offers FULL or OFF."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA synchronous=NORMAL")


def _build() -> SqliteHuey:
    options: dict[str, Any] = {"filename": os.environ["BENCH_HUEY_PATH"]}
    if os.environ.get("BENCH_HUEY_SYNCHRONOUS", "").upper() == "NORMAL":
        options["factory"] = NormalSyncConnection  # passed through to sqlite3.connect()
    return SqliteHuey("bench", **options)


huey = _build()


@huey.task()  # type: ignore[untyped-decorator]
def noop() -> None:
    """Do nothing: what is left to measure is the queue."""


@huey.task()  # type: ignore[untyped-decorator]
def record(user_id: int, action: str, data: dict[str, object]) -> int:
    """What a site enqueues: an id, a short string and a small dict; returns a small value."""
    return user_id + len(action) + len(data)


@huey.task()  # type: ignore[untyped-decorator]
def arrive(sent_ns: int, user_id: int, action: str, data: dict[str, object]) -> int:
    """``record`` that notes when it started (``benchmarks.sustained``)."""
    note_arrival(sent_ns)
    return user_id + len(action) + len(data)


@huey.task()  # type: ignore[untyped-decorator]
def stamp() -> int:
    """Return the wall-clock time at which the task body started, in nanoseconds."""
    return time.time_ns()


class _DrainWindow:
    """First start and last finish of the ``record`` and ``noop`` tasks, through huey's signals."""

    NAMES = ("record", "noop")

    def __init__(self, expect: int, out: Path) -> None:
        self.expect = expect
        self.out = out
        self.windows: dict[str, dict[str, Any]] = {
            name: {"first_start_ns": None, "last_finish_ns": 0, "count": 0} for name in self.NAMES
        }
        self.count = 0
        self.lock = threading.Lock()

    def _window(self, task: Any) -> dict[str, Any] | None:
        return self.windows.get(task.name.rpartition(".")[2])

    def started(self, signal: str, task: Any, *args: Any) -> None:
        window = self._window(task)
        if window is not None and window["first_start_ns"] is None:
            window["first_start_ns"] = time.time_ns()

    def finished(self, signal: str, task: Any, *args: Any) -> None:
        window = self._window(task)
        if window is None:
            return
        now = time.time_ns()
        with self.lock:
            window["last_finish_ns"] = max(window["last_finish_ns"], now)
            window["count"] += 1
            self.count += 1
            if self.count == self.expect:
                self.write()

    def write(self) -> None:
        partial = self.out.with_suffix(".partial")
        partial.write_text(json.dumps(self.windows))
        partial.replace(self.out)


if os.environ.get("BENCH_HUEY_WINDOW"):
    _window = _DrainWindow(
        int(os.environ["BENCH_HUEY_EXPECT"]), Path(os.environ["BENCH_HUEY_WINDOW"])
    )
    huey.signal(SIGNAL_EXECUTING)(_window.started)
    huey.signal(SIGNAL_COMPLETE)(_window.finished)
