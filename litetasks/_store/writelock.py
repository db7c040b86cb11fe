"""Writers take turns on a kernel lock, and the kernel wakes the next one when a turn ends.

SQLite's write lock cannot be waited for: a writer that finds it taken gets SQLITE_BUSY and its
busy handler sleeps and tries again. Queue transactions last tens of microseconds, so with
several processes enqueueing at once the sleeps, not the lock, set the pace: eight producers
on two cores ran at 0.4-0.7x of one, with calls waiting 20-60 ms (issue 17). So every write of
the store first takes ``flock(LOCK_EX)`` on a file beside the queue file (``write.lock`` in its
doorbell folder), and only then SQLite's lock, which is then free at once. A waiter sleeps in
the kernel and is woken when the holder releases: no timer, no spinning.

- A process killed while it holds the lock loses it with its last descriptor: the kernel
  releases it, as it releases SQLite's own locks.
- A holder that stops (SIGSTOP, a debugger) keeps it; a waiter gives up after
  ``busy_timeout_ms`` with the same error as SQLite's busy timeout. ``flock`` itself cannot
  time out, so an uncontended turn takes it at once (``LOCK_NB``) and a contended one waits in
  a helper thread of its own while the caller waits, bounded, for the helper to get it; a turn
  given up is released by the helper when it finally arrives.
- ``flock`` locks belong to an open file description: each ``Handle`` (one per thread) opens
  its own. The threads of one process first take turns on a ``threading.Lock`` per file, so
  only one of them at a time meets the other processes at the kernel's lock. A forked child
  closes the descriptions it inherited (a killed parent's lock would otherwise live on in it).
- Where the lock file cannot be made (a read-only folder, a filesystem without ``flock``),
  writers go without it, as before: SQLite's lock and the busy handler keep them correct.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import weakref
from pathlib import Path

from .doorbell import doorbell_folder_problem, doorbell_path

__all__ = ["LOCK_NAME", "WriteLock", "write_lock_path"]

logger = logging.getLogger(__name__)

LOCK_NAME = "write.lock"
_MODE = 0o600
_DIR_MODE = 0o700

# Every open lock of this process, so that a forked child can close their descriptions.
_open_locks: weakref.WeakSet[WriteLock] = weakref.WeakSet()
# The threads of one process take turns on a lock of their own first, per lock file: a waiting
# thread sleeps on a futex and is woken at release, and only one thread of the process at a
# time meets the other processes at the kernel's lock (and, contended, needs its helper).
_thread_turns: dict[Path, threading.Lock] = {}
_thread_turns_lock = threading.Lock()


def _thread_turn(path: Path) -> threading.Lock:
    with _thread_turns_lock:
        return _thread_turns.setdefault(path, threading.Lock())


def write_lock_path(queue_path: Path) -> Path:
    """Return the lock file of ``queue_path``: in the folder of its doorbell."""
    return doorbell_path(queue_path).parent / LOCK_NAME


def _open_lock_file(path: Path) -> int | None:
    """Open (creating) the lock file; None, with the reason logged, when it cannot be used."""
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path.parent, _DIR_MODE)
        problem = doorbell_folder_problem(path.parent)
        if problem is not None:
            raise PermissionError(problem)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, _MODE)
    except OSError as exc:
        logger.info(
            "No write lock file for %s (%s); writers wait in SQLite's busy handler", path, exc
        )
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # does this filesystem lock at all?
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        pass  # someone holds it: it works
    except OSError as exc:
        os.close(fd)
        logger.info(
            "flock does not work on %s (%s); writers wait in SQLite's busy handler", path, exc
        )
        return None
    return fd


class WriteLock:
    """One thread's turn-taking on the write lock of a queue file (see the module docstring)."""

    def __init__(self, queue_path: Path, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        path = write_lock_path(queue_path)
        self.fd = _open_lock_file(path)
        self._threads = _thread_turn(path)
        self._turn = threading.Condition(threading.Lock())
        self._asked = False  # the helper is (to be) in flock() for us
        self._granted = False  # the helper got it, for a caller that still waits
        self._waiting = False  # a caller waits for the helper
        self._closed = False
        self._helper: threading.Thread | None = None
        if self.fd is not None:
            _open_locks.add(self)

    def acquire(self) -> bool:
        """Take the lock; False when this file has none. Raises ``TimeoutError`` after
        ``timeout_s`` (its holder is stopped, or holds it that long)."""
        fd = self.fd
        if fd is None:
            return False
        if not self._threads.acquire(timeout=self.timeout_s):
            raise TimeoutError(f"the write lock stayed taken for {self.timeout_s:g} s")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                self._wait()
            except BaseException:
                self._threads.release()
                raise
        return True

    def release(self) -> None:
        """End this turn (``acquire`` returned True): the kernel wakes the next waiter, and the
        thread lock the next thread."""
        try:
            if self.fd is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _wait(self) -> None:
        with self._turn:
            self._waiting = True
            if not self._asked:
                self._asked = True
                self._start_helper()
                self._turn.notify_all()
            got = self._turn.wait_for(lambda: self._granted, self.timeout_s)
            self._waiting = False
            self._granted = False
        if not got:
            raise TimeoutError(f"the write lock stayed taken for {self.timeout_s:g} s")

    def _start_helper(self) -> None:
        if self._helper is None:
            self._helper = threading.Thread(
                target=self._serve, name="litetasks-write-lock", daemon=True
            )
            self._helper.start()

    def _serve(self) -> None:
        """The helper: take the lock in the kernel's queue whenever a caller asks."""
        while True:
            with self._turn:
                self._turn.wait_for(lambda: self._asked or self._closed)
                if self._closed:
                    return
                fd = self.fd
            assert fd is not None
            fcntl.flock(fd, fcntl.LOCK_EX)  # sleeps until the holder releases (or dies)
            with self._turn:
                self._asked = False
                if self._waiting and not self._closed:
                    self._granted = True
                    self._turn.notify_all()
                    continue
                fcntl.flock(fd, fcntl.LOCK_UN)  # the caller gave up meanwhile
                if self._closed:
                    self._close_fd()
                    return

    def close(self) -> None:
        """Close the lock file (a helper still waiting in the kernel closes it when it returns)."""
        with self._turn:
            if self._closed:
                return
            self._closed = True
            self._turn.notify_all()
            if not self._asked:
                self._close_fd()
        _open_locks.discard(self)

    def _close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's description; this lock is not used here."""
        self._turn = threading.Condition(threading.Lock())
        self._helper = None
        self._asked = self._granted = self._waiting = False
        self._closed = True
        with contextlib.suppress(OSError):
            self._close_fd()


def _after_fork_in_child() -> None:
    global _thread_turns_lock
    _thread_turns_lock = threading.Lock()
    _thread_turns.clear()
    for lock in list(_open_locks):
        lock._forget_after_fork()  # noqa: SLF001  # this module's own class
    _open_locks.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
