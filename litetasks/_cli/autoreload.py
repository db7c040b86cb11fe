"""``litetasks run --reload``: restart the worker pool when project Python files change.

The pool runs as a child process (``litetasks run`` without ``--reload``); this parent only
watches files with watchdog. On a change it sends the child SIGTERM, so running tasks finish
(within the grace period) and unfinished ones go back to READY, then starts a new child that
imports the new code. Keeping the watcher out of the supervisor keeps the supervisor free of
threads, which it must be to fork safely.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

__all__ = ["run_with_reload"]

logger = logging.getLogger(__name__)

_IGNORED_PARTS = {"__pycache__", ".git", ".venv", "venv", "node_modules", ".tox", ".mypy_cache"}
# Several files often change at once (a git checkout, an editor's save): wait for quiet.
_DEBOUNCE_S = 0.3


class _PythonChanges(FileSystemEventHandler):
    def __init__(self, changed: threading.Event) -> None:
        self.changed = changed

    def on_any_event(self, event: FileSystemEvent) -> None:
        # watchdog >= 5 reports files closed without writing and opened ones: not changes.
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = Path(str(raw))
            if path.suffix == ".py" and not _IGNORED_PARTS.intersection(path.parts):
                self.changed.set()
                return


def run_with_reload(child_argv: Sequence[str], watch: Sequence[Path]) -> int:
    """Run ``child_argv`` and restart it whenever a ``.py`` file under ``watch`` changes."""
    changed = threading.Event()
    signals = _Signals()
    observer = Observer()
    handler = _PythonChanges(changed)
    for folder in watch:
        observer.schedule(handler, str(folder), recursive=True)
    observer.start()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # The loop forwards it; nothing else is safe here. A repeated SIGHUP does not force the
        # stop (a closing terminal can send two), as in the supervisor.
        if signum != signal.SIGHUP or not signals.received:
            signals.received += 1
        changed.set()

    stop_signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, on_signal) for s in stop_signals}
    try:
        return _loop(child_argv, changed, signals)
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
        observer.stop()
        observer.join()


class _Signals:
    received = 0
    forwarded = 0


def _loop(child_argv: Sequence[str], changed: threading.Event, signals: _Signals) -> int:
    env = {**os.environ, "LITETASKS_PARENT_PID": str(os.getpid())}
    while True:
        changed.clear()
        # A session of its own: a terminal's Ctrl-C reaches only us, and we forward it once.
        child = subprocess.Popen(list(child_argv), env=env, start_new_session=True)
        while not changed.wait(0.5):
            if child.poll() is not None:
                return child.returncode
        if not signals.received:
            while changed.wait(_DEBOUNCE_S):
                changed.clear()
            logger.info("Python files changed; restarting the worker pool")
            child.send_signal(signal.SIGTERM)
            child.wait()
            continue
        while child.poll() is None:
            while signals.forwarded < signals.received:
                signals.forwarded += 1
                child.send_signal(signal.SIGTERM)
            changed.clear()
            changed.wait(0.1)
        return child.returncode


def reload_command(argv: Sequence[str]) -> list[str]:
    """Return the child's command line: this ``run`` command without ``--reload``.

    Works for ``litetasks run …`` and ``manage.py litetasks run …`` alike: the settings module
    reaches the child through the environment that ``manage.py`` set.
    """
    run_args = list(argv[list(argv).index("run") + 1 :]) if "run" in argv else []
    return [sys.executable, "-m", "litetasks", "run", *(a for a in run_args if a != "--reload")]
