"""Wake idle workers within milliseconds of a commit, without polling the queue file.

Producers call ``Doorbell.ring()`` after each commit that makes work available. A ring wakes the
``Waiter``s of this process directly and touches ``<queue file>-doorbell`` (``os.utime``, one
IN_ATTRIB event), which a watchdog observer on the folder turns into a wake-up in every other
process. The ``-wal`` file is deliberately not watched: it changes at a transaction's first write,
before the commit is visible, so a worker woken by it may find nothing to claim.

A ring is a hint, not a delivery guarantee (the kernel may drop events, the file may be
unwritable): workers still poll slowly for missed rings and for due ``run_after`` times. Nor is
it exactly-once: a ring in a process that also waits reaches its waiters directly and then again
through its own file event, so a waiter can wake once more and find nothing to claim.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import stat
import threading
import weakref
from pathlib import Path
from types import TracebackType

from watchdog.events import (
    FileAttribEvent,
    FileClosedEvent,
    FileModifiedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

__all__ = ["Doorbell", "Waiter", "doorbell_folder_problem", "doorbell_path"]

logger = logging.getLogger(__name__)


class _StoppingRaceFilter(logging.Filter):
    """Drop watchdog's ERROR for its own benign stop race.

    watchdog 7's inotify emitter can loop once more after ``on_thread_stop`` dropped its
    inotify handle, and logs "queue_events() called when the thread is inactive" at ERROR
    (watchdog/observers/inotify.py, ``InotifyEmitter.queue_events``). Nothing is lost: the
    observer is stopping. Without a handler the message lands on stderr through logging's
    last-resort handler, so every Waiter.stop() could print a false error.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_StoppingRaceFilter())

# The doorbell is a file alone in a folder of its own beside the queue file: watchdog watches a
# file's folder (inotify on the folder, filtered in Python), and the queue file's folder also
# holds its -wal and -shm, which change on every commit. Four watchdog threads woke for each
# such change, taking the GIL from a draining worker's executors a thousand times a second.
DOORBELL_SUFFIX = "-doorbell.d"
_BELL_NAME = "ring"
_DOORBELL_MODE = 0o600
_DOORBELL_DIR_MODE = 0o700

# What a ring looks like through watchdog 7 on Linux inotify: os.utime() is IN_ATTRIB, reported as
# FileAttribEvent; a write (or `echo > file`) is IN_MODIFY, FileModifiedEvent; closing a file that
# was opened for writing (creating it, or touch(1)) is IN_CLOSE_WRITE, FileClosedEvent.
_RING_EVENTS: tuple[type[FileSystemEvent], ...] = (
    FileAttribEvent,
    FileModifiedEvent,
    FileClosedEvent,
)
# The inotify mask is built from this filter, and watchdog 7.1 only subscribes to IN_ATTRIB for
# FileModifiedEvent: a filter of [FileAttribEvent] alone receives nothing. Leaving out
# FileCreatedEvent/FileMovedEvent keeps IN_MOVE out of the mask; an unpaired IN_MOVED_FROM (a file
# moved out of the folder) holds back every later event of that observer for 0.5 s.
_EVENT_FILTER: list[type[FileSystemEvent]] = [FileModifiedEvent, FileAttribEvent, FileClosedEvent]

# Waiters of this process by doorbell path, so a ring reaches them without a filesystem round-trip.
# Process-wide by nature; replaced in a forked child, whose copy would name waiters (and observer
# threads) that exist only in the parent.
_registry_lock = threading.Lock()
_registry: dict[Path, set[Waiter]] = {}
_warned: set[str] = set()


def _reset_after_fork() -> None:
    global _registry_lock, _registry
    _registry_lock = threading.Lock()
    _registry = {}


os.register_at_fork(after_in_child=_reset_after_fork)


def doorbell_path(queue_path: Path) -> Path:
    """Return the doorbell file of ``queue_path``: ``ring`` in the folder named as the resolved
    queue file plus ``-doorbell.d``.

    Resolving (symlinks, relative paths) makes every process agree on one file and one registry key.
    """
    resolved = Path(queue_path).resolve()
    return resolved.with_name(resolved.name + DOORBELL_SUFFIX) / _BELL_NAME


class Doorbell:
    """Rings waiters on one queue file: in this process directly, in others through the file."""

    def __init__(self, queue_path: Path) -> None:
        self.path = doorbell_path(queue_path)
        self._is_failing = False
        self._is_checked = False  # the folder was found (or made) private

    def ring(self) -> None:
        """Wake every waiter of this queue file; call after each commit that makes work available.

        Never raises. If the file cannot be touched, logs one warning (until a ring succeeds
        again): other processes then see the work only at their next poll.
        """
        _wake_local(self.path)
        try:
            if not self._is_checked:
                _create(self.path)
                self._is_checked = True
            _touch(self.path)
        except (OSError, ValueError) as exc:
            if not self._is_failing:
                self._is_failing = True
                logger.warning(
                    "Could not ring the doorbell path=%s error=%s; workers in other processes "
                    "will find new tasks at their next poll",
                    self.path,
                    exc,
                )
        else:
            self._is_failing = False


class Waiter:
    """Lets a worker process sleep until the doorbell rings or a timeout passes.

    Use one Waiter per waiting thread: ``clear()`` forgets rings for every thread that shares it.
    A Waiter does not survive ``fork()``; create it in the process that waits.
    """

    def __init__(self, queue_path: Path) -> None:
        self.path = doorbell_path(queue_path)
        self._rung = Bell()
        self._lock = threading.Lock()
        self._observer: BaseObserver | None = None
        self._is_started = False
        self._pid = 0

    @property
    def is_watching(self) -> bool:
        """True while rings from other processes can reach this Waiter (the observer runs)."""
        return self._observer is not None

    def start(self) -> None:
        """Register for rings in this process and start watching the doorbell file.

        If the folder cannot be watched, logs a warning once per path and carries on: ``wait()``
        then ends at its timeout or at a ring from this process.
        """
        with self._lock:
            if self._is_started:
                return
            self._is_started = True
            self._pid = os.getpid()
            with _registry_lock:
                _registry.setdefault(self.path, set()).add(self)
            self._observer = _watch(self.path, self._rung)

    def stop(self) -> None:
        """Stop and join the observer, and stop receiving rings. Idempotent."""
        with self._lock:
            if not self._is_started:
                return
            self._is_started = False
            observer, self._observer = self._observer, None
            with _registry_lock:
                waiters = _registry.get(self.path)
                if waiters is not None:
                    waiters.discard(self)
                    if not waiters:
                        del _registry[self.path]
        # In a forked child the observer's threads are gone and its locks may be held: drop it.
        if observer is not None and self._pid == os.getpid():
            # Unscheduling first stops the emitter before the observer: stopping the observer
            # alone races with an emitter mid-read, which watchdog reports as an ERROR
            # ("queue_events() called when the thread is inactive").
            observer.unschedule_all()
            observer.stop()
            observer.join()

    def clear(self) -> None:
        """Forget earlier rings; call before looking for work, then ``wait()`` if there is none."""
        self._rung.clear()

    def wait(self, timeout_s: float) -> bool:
        """Block until a ring since the last ``clear()`` or until ``timeout_s``; True if rung."""
        return self._rung.wait(timeout_s)

    def wake(self) -> None:
        """End the current (or next) ``wait()`` now, as a ring would; for shutdown."""
        self._rung.set()

    def __enter__(self) -> Waiter:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Bell:
    """A flag that one thread waits on and any thread, or a signal handler, sets.

    Like ``threading.Event``, but ``set()`` takes no lock: it writes a byte into a non-blocking
    pipe, which ``wait()`` polls. ``Event.set()`` called from a signal handler deadlocks when
    the signal lands on a thread that is inside that Event's ``wait()`` or ``clear()`` (holding
    its lock), and workers are stopped by signals handled on the thread that waits.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        # Closed when the Bell is collected, never at interpreter exit (the default for a
        # finalizer): atexit handlers that stop a pool still ring it then.
        weakref.finalize(self, _close_pipe, self._read, self._write).atexit = False

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full of earlier rings: set already
            os.write(self._write, b"\0")

    def clear(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:  # drained
            pass

    def wait(self, timeout_s: float) -> bool:
        """Block until set or ``timeout_s`` passes (rounded up to a millisecond); True if set."""
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        return bool(poller.poll(math.ceil(max(0.0, timeout_s) * 1000)))


def _close_pipe(read: int, write: int) -> None:
    os.close(read)
    os.close(write)


class _DoorbellHandler(FileSystemEventHandler):
    """Turn events on the doorbell file, and only on it, into a ring."""

    def __init__(self, path: Path, rung: Bell) -> None:
        self._path = str(path)
        self._rung = rung

    def dispatch(self, event: FileSystemEvent) -> None:
        # Moves are not in _RING_EVENTS (see _EVENT_FILTER), so src_path is the file that changed.
        if isinstance(event, _RING_EVENTS) and os.fsdecode(event.src_path) == self._path:
            self._rung.set()


def _wake_local(path: Path) -> None:
    with _registry_lock:
        waiters = tuple(_registry.get(path, ()))
    for waiter in waiters:
        waiter.wake()


def _touch(path: Path) -> None:
    # Not following a symlink: the folder is private (checked once by _create), so none should
    # be there, and if one is, only the link's own time changes.
    try:
        os.utime(path, follow_symlinks=False)
    except FileNotFoundError:
        _create(path)
        os.utime(path, follow_symlinks=False)


def _create(path: Path) -> None:
    """Create the doorbell file and its private folder; refuse a folder someone else planted."""
    with contextlib.suppress(FileExistsError):  # another process created it first
        os.mkdir(path.parent, _DOORBELL_DIR_MODE)
    problem = doorbell_folder_problem(path.parent)
    if problem is not None:
        raise PermissionError(problem)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _DOORBELL_MODE)
    except FileExistsError:
        return
    os.close(fd)


def doorbell_folder_problem(folder: Path) -> str | None:
    """Say why ``folder`` is not a doorbell folder of this user's own; None if it is (or is
    missing).

    Another user who could write into the folder, or who planted it (or a symlink to a folder of
    theirs) before litetasks made it, could replace the bell with a symlink to one of this
    user's files, or see every ring.
    """
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return None
    where = f"The doorbell folder {str(folder)!r}"
    if stat.S_ISLNK(info.st_mode):
        return f"{where} is a symlink; litetasks rings only in a folder of its own."
    if not stat.S_ISDIR(info.st_mode):
        return f"{where} is not a folder."
    if info.st_uid != os.geteuid():
        return f"{where} belongs to another user (uid {info.st_uid}), not to this one."
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{where} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o})."
    return None


def _watch(path: Path, rung: Bell) -> BaseObserver | None:
    """Start an observer that sets ``rung`` on each ring of ``path``; None if watching fails."""
    if Observer is PollingObserver:
        # No native watcher on this platform: polling the folder would cost CPU for nothing the
        # workers' own fallback poll does not already do.
        _warn_once(path, "no native file watcher on this platform")
        return None
    try:
        observer = Observer()
    except OSError as exc:  # EMFILE: fs.inotify.max_user_instances reached
        _warn_once(path, str(exc))
        return None
    observer.name = "litetasks-doorbell"
    try:
        _create(path)
        observer.schedule(_DoorbellHandler(path, rung), str(path), event_filter=_EVENT_FILTER)
        observer.start()
    except OSError as exc:  # the folder is missing or unreadable, or max_user_watches is reached
        observer.stop()  # also stops the inotify reader thread the constructor started
        _warn_once(path, str(exc))
        return None
    return observer


def _warn_once(path: Path, reason: str) -> None:
    with _registry_lock:
        if str(path) in _warned:
            return
        _warned.add(str(path))
    logger.warning(
        "Cannot watch the doorbell path=%s error=%s; idle workers will wake only at their poll "
        "interval or on a ring from their own process",
        path,
        reason,
    )
