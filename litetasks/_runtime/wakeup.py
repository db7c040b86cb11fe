"""Let idle workers sleep until a queue file's doorbell rings, without polling the queue file.

A ``Waiter`` wakes when a producer of this process rings (it listens in
``litetasks._store.doorbell``) or when the doorbell file of another process's ring changes: on
Linux the waiting thread polls an inotify descriptor on the doorbell's folder itself
(``inotify.py``), elsewhere a watchdog observer's threads pass the event on. A ring is a hint,
not a delivery guarantee (the kernel may drop events, the file may be unwritable): workers
still poll slowly for missed rings and for due ``run_after`` times. Nor is it exactly-once: a
ring in a process that also waits reaches its waiters directly and then again through its own
file event, so a waiter can wake once more and find nothing to claim. A doorbell folder removed
under a waiter (a temp-file cleaner) is noticed within a second and watched anew.
A ring touches the file only when a waiter set the shared listening byte since the last touch
(``litetasks._store.doorbell.Listening``): ``clear()`` sets it, so every waiter must call it
before it looks for work, as it must anyway to see rings of commits made after that look.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import threading
import time
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

from .._store.doorbell import Listening, create_doorbell, doorbell_path, listen, unlisten
from . import inotify
from .inotify import InotifyWatch

__all__ = ["Bell", "Waiter"]

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
# How often clear() tries again to map a listening byte it could not map (its folder was
# missing); until it can, producers in other processes may skip the rings this waiter needs.
# Also how often it tries to watch again a doorbell folder that was removed.
_LISTENING_RETRY_S = 1.0


class Waiter:
    """Lets a worker process sleep until the doorbell rings or a timeout passes.

    Use one Waiter per waiting thread: ``clear()`` forgets rings for every thread that shares it.
    A Waiter does not survive ``fork()``; create it in the process that waits.
    """

    def __init__(self, queue_path: Path) -> None:
        self.path = doorbell_path(queue_path)
        self._rung = Bell()
        self._lock = threading.Lock()
        self._observer: BaseObserver | None = None  # where there is no inotify
        self._inotify: InotifyWatch | None = None
        self._poller: select.poll | None = None  # the bell's pipe and the inotify descriptor
        self._heard = False  # the inotify watch heard a ring since clear(): the waiting thread's
        self._rewatch_at = 0.0  # when clear() next checks the watched folder
        self._rewatching = False  # the folder was removed and is not watched again yet
        self._is_started = False
        self._pid = 0
        self._listening: Listening | None = None
        self._listening_retry_at = 0.0

    @property
    def is_watching(self) -> bool:
        """True while rings from other processes can reach this Waiter."""
        watch = self._inotify
        return self._observer is not None or (watch is not None and not watch.gone)

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
            listen(self.path, self)
            # Before the watch: opening the ring file to map it is a file event (IN_CLOSE_WRITE).
            self._map_listening()
            if inotify.is_available():
                self._set_inotify(_watch_natively(self.path))
            else:
                self._observer = _watch(self.path, self._rung)

    def stop(self) -> None:
        """Stop and join the observer, and stop receiving rings. Idempotent."""
        with self._lock:
            if not self._is_started:
                return
            self._is_started = False
            observer, self._observer = self._observer, None
            self._set_inotify(None)
            unlisten(self.path, self)
        # In a forked child the observer's threads are gone and its locks may be held: drop it.
        if observer is not None and self._pid == os.getpid():
            # Unscheduling first stops the emitter before the observer: stopping the observer
            # alone races with an emitter mid-read, which watchdog reports as an ERROR
            # ("queue_events() called when the thread is inactive").
            observer.unschedule_all()
            observer.stop()
            observer.join()

    def clear(self) -> None:
        """Forget earlier rings; call before looking for work, then ``wait()`` if there is none.

        Also sets the listening byte, so that the next commit in any process touches the
        doorbell file: the look that follows sees every commit made before that.
        """
        self._rung.clear()
        watch = self._inotify
        if watch is not None:
            self._heard = False
            watch.read()  # rings before this look: it sees their commits
        if watch is not None or self._rewatching:
            self._check_watch(watch)
        listening = self._listening
        if listening is None:
            listening = self._map_listening()
        if listening is not None:
            listening.set()

    def _map_listening(self) -> Listening | None:
        now = time.monotonic()
        if now < self._listening_retry_at:
            return None
        self._listening_retry_at = now + _LISTENING_RETRY_S
        try:
            self._listening = Listening(self.path)
        except (OSError, ValueError) as exc:
            _warn_once(self.path, f"its listening byte cannot be mapped: {exc}")
        return self._listening

    def wait(self, timeout_s: float) -> bool:
        """Block until a ring since the last ``clear()`` or until ``timeout_s``; True if rung."""
        watch, poller = self._inotify, self._poller
        if watch is None or poller is None or watch.gone:
            return self._rung.wait(timeout_s)
        if self._heard:
            return True
        deadline = time.monotonic() + timeout_s
        while True:
            ready = poller.poll(math.ceil(max(0.0, deadline - time.monotonic()) * 1000))
            if not ready:
                return False
            if self._inotify is not watch:  # stopped meanwhile, from another thread
                return self._rung.wait(max(0.0, deadline - time.monotonic()))
            bell_rang = any(fd == self._rung.fileno() for fd, _ in ready)
            if len(ready) > 1 or not bell_rang:  # inotify events wait: read them
                self._heard = watch.read()
            if bell_rang or self._heard:
                return True  # a ring of this process or wake(), or one of another process
            if time.monotonic() >= deadline:  # only other files' events came
                return False

    def wake(self) -> None:
        """End the current (or next) ``wait()`` now, as a ring would; for shutdown."""
        self._rung.set()

    def _set_inotify(self, watch: InotifyWatch | None) -> None:
        old, self._inotify = self._inotify, watch
        if old is not None:
            old.close()  # in a forked child, the child's copy of the descriptor only
        self._heard = False
        self._poller = None
        if watch is not None:
            poller = select.poll()
            poller.register(self._rung.fileno(), select.POLLIN)
            poller.register(watch.fileno(), select.POLLIN)
            self._poller = poller

    def _check_watch(self, watch: InotifyWatch | None) -> None:
        """Once a second: if the doorbell's folder was removed (a temp-file cleaner), watch the
        one made anew, and map its listening byte."""
        now = time.monotonic()
        if now < self._rewatch_at and not (watch is not None and watch.gone):
            return
        self._rewatch_at = now + _LISTENING_RETRY_S
        if watch is not None and not watch.gone and watch.is_at_path():
            return
        with self._lock:
            if self._is_started:
                watch = _watch_natively(self.path)
                self._set_inotify(watch)
                self._rewatching = watch is None
        self._listening = None  # the byte's file went with the folder: map the new one
        self._listening_retry_at = 0.0

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

    def fileno(self) -> int:
        """The pipe's end that is readable while the flag is set."""
        return self._read

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


def _watch_natively(path: Path) -> InotifyWatch | None:
    """Watch the doorbell's folder with inotify; None if watching fails (warned once)."""
    try:
        create_doorbell(path)
        return InotifyWatch(path.parent, path.name)
    except OSError as exc:  # the folder is missing or refused, or an inotify limit is reached
        _warn_once(path, str(exc))
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
        create_doorbell(path)
        observer.schedule(_DoorbellHandler(path, rung), str(path), event_filter=_EVENT_FILTER)
        observer.start()
    except OSError as exc:  # the folder is missing or unreadable, or max_user_watches is reached
        observer.stop()  # also stops the inotify reader thread the constructor started
        _warn_once(path, str(exc))
        return None
    return observer


# Paths already warned about (once per process and path).
_warned_lock = threading.Lock()
_warned: set[str] = set()


def _warn_once(path: Path, reason: str) -> None:
    with _warned_lock:
        if str(path) in _warned:
            return
        _warned.add(str(path))
    logger.warning(
        "Cannot watch the doorbell path=%s error=%s; idle workers will wake only at their poll "
        "interval or on a ring from their own process",
        path,
        reason,
    )
