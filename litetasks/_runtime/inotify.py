"""Linux inotify on the doorbell's folder, read by the thread that waits: no watcher threads.

Through watchdog a ring from another process reached a worker's dispatcher through three
threads (watchdog's inotify reader, its emitter and its observer), each woken in turn: under a
steady trickle of tasks those wake-ups cost each worker process more CPU than its claims
(issue 17). Here the waiting thread polls the inotify descriptor beside its own pipe and reads
the events itself. Where the C library has no inotify (macOS, the BSDs), ``InotifyWatch``
raises ``OSError`` and the waiter uses watchdog's native observer instead.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from pathlib import Path
from typing import Any

from .._store.doorbell import is_still

__all__ = ["InotifyWatch", "is_available", "parse_events"]

# <sys/inotify.h>
IN_MODIFY = 0x00000002  # a write
IN_ATTRIB = 0x00000004  # os.utime(): what a ring is
IN_CLOSE_WRITE = 0x00000008  # a file opened for writing was closed (creation, touch(1))
IN_Q_OVERFLOW = 0x00004000  # the kernel dropped events: any of them may have been a ring
IN_IGNORED = 0x00008000  # the watch is gone (the folder was removed)
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = 0o2000000

RING_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name


def _libc() -> tuple[Any, Any] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init, add_watch = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError, TypeError):  # not Linux (or no C library to call)
        return None
    init.restype = ctypes.c_int
    init.argtypes = [ctypes.c_int]
    add_watch.restype = ctypes.c_int
    add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return init, add_watch


_LIBC = _libc()


def is_available() -> bool:
    """Whether this platform has inotify (Linux)."""
    return _LIBC is not None


class InotifyWatch:
    """An inotify descriptor watching one folder for changes to one file in it.

    ``fileno()`` becomes readable when events wait; ``read()`` takes them all and says whether
    one was a change to the file, or may have been (the kernel's queue overflowed). ``gone``
    turns true once the folder is removed: the watch hears nothing more. Raises ``OSError``
    when the platform has no inotify, the instance or watch limits are reached, or the folder
    is missing.
    """

    def __init__(self, folder: Path, name: str) -> None:
        if _LIBC is None:
            raise OSError(errno.ENOSYS, "no inotify on this platform")
        init, add_watch = _LIBC
        self.folder = folder
        self._name = os.fsencode(name)
        self.gone = False
        fd = init(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _os_error(f"inotify_init1: {folder}")
        try:
            mask = RING_MASK | IN_ONLYDIR | IN_DONT_FOLLOW
            if add_watch(fd, os.fsencode(folder), mask) < 0:
                raise _os_error(str(folder))
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        try:
            info = os.stat(folder, follow_symlinks=False)
        except OSError:
            self.close()
            raise
        self._identity = (info.st_dev, info.st_ino)

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError("the watch is closed")
        return self._fd

    def read(self) -> bool:
        """Take every waiting event; return True if one changed the file or may have."""
        fd = self._fd
        if fd is None:
            return False
        changed = False
        while True:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return changed
            for mask, name in parse_events(data):
                if mask & IN_IGNORED:
                    self.gone = True  # whatever happened to the folder, look once
                if mask & (IN_Q_OVERFLOW | IN_IGNORED) or (mask & RING_MASK and name == self._name):
                    changed = True

    def is_at_path(self) -> bool:
        """Whether the folder at the path is still the one watched. A removed folder whose
        files are still open or mapped (the waiters' listening byte) sends no event."""
        return is_still(self.folder, self._identity)

    def close(self) -> None:
        """Close the descriptor (idempotent); in a forked child, the child's copy only."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def parse_events(data: bytes) -> list[tuple[int, bytes]]:
    """The (mask, name) of each ``struct inotify_event`` in ``data``, as ``read()`` returns
    them (whole events only)."""
    events = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        _, mask, _, length = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        events.append((mask, data[start : start + length].rstrip(b"\0")))
        offset = start + length
    return events


def _os_error(what: str) -> OSError:
    code = ctypes.get_errno()
    if code == errno.ENOSPC:
        return OSError(code, "inotify watch limit reached (fs.inotify.max_user_watches)", what)
    if code == errno.EMFILE:
        reason = "inotify instance limit (fs.inotify.max_user_instances) or open file limit reached"
        return OSError(code, reason, what)
    return OSError(code, os.strerror(code), what)
