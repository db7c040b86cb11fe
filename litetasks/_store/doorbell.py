"""Ring a queue file's doorbell: tell idle workers that a commit made work available.

Producers call ``Doorbell.ring()`` after each commit that makes a job READY. A ring wakes the
listeners of this process directly (the runtime's ``Waiter``s listen here) and touches
``<queue file>-doorbell.d/ring`` (``os.utime``: one IN_ATTRIB event), which the workers of
other processes watch (``litetasks._runtime.wakeup``). The ``-wal`` file is deliberately not
the signal: it changes at a transaction's first write, before the commit is visible, so a
worker woken by it may find nothing to claim.

The touch is skipped while no waiter can need it. The first byte of the ring file, mapped by
every process of the queue file, is the listening byte (``Listening``). A waiter sets it when
it clears its bell, before it looks at the queue file for work; a ring that finds it set clears
it, then touches the ring file; a ring that finds it clear touches nothing. Take a waiter that
set the byte and then looked: a commit whose ring read the byte before that setting is seen by
the look (SQLite begins every read with a memory barrier); a ring that read it after and found
it clear came after another ring cleared it, and that ring's touch, which follows its
clearing, wakes the waiter. So while workers drain, a stream of enqueues touches the file once
per waiter's look, not once per commit (issue 17: 2.7 µs a touch, and a wake-up of every
worker's watcher thread).

A ring is a hint, not a delivery guarantee (the kernel may drop events, the file may be
unwritable): workers still poll slowly for missed rings and for due ``run_after`` times.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
import stat
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "DOORBELL_SUFFIX",
    "Doorbell",
    "Listener",
    "Listening",
    "create_doorbell",
    "doorbell_folder_problem",
    "doorbell_path",
    "is_still",
    "listen",
    "share",
    "unlisten",
]

logger = logging.getLogger(__name__)

# The doorbell is a file alone in a folder of its own beside the queue file: inotify watches a
# file's folder, and the queue file's folder also holds its -wal and -shm, which change on
# every commit. The watcher would wake for each such change (four watchdog threads did, when
# watchdog read it), taking the GIL from a draining worker's executors.
DOORBELL_SUFFIX = "-doorbell.d"
_BELL_NAME = "ring"
# Bytes of the ring file, mapped (``Listening``): the first is the listening byte. Written, not
# made by ftruncate, so their block is allocated at once: a write through the mapping into a
# hole could fail with SIGBUS on a full disk.
_LISTENING_BYTES = 64
# How often a ring looks whether the ring file at the path is still the one it mapped (someone
# deleted the folder): at worst, waiters that map the new file miss rings that long.
LISTENING_CHECK_S = 0.1
_DOORBELL_MODE = 0o600
_DOORBELL_DIR_MODE = 0o700


class Listener(Protocol):
    """What waits in this process for the rings of a doorbell (the runtime's ``Waiter``)."""

    def wake(self) -> None: ...


# Listeners of this process by doorbell path, so a ring reaches them without a filesystem
# round-trip. Process-wide by nature; replaced in a forked child, whose copy would name
# listeners (and observer threads) that exist only in the parent.
_registry_lock = threading.Lock()
_registry: dict[Path, set[Listener]] = {}


# Doorbell folders shared with the group (OPTIONS["file_mode"] with group bits), by folder:
# the queue file's mode. Its group can write the queue file itself, so trusting the group
# with the doorbell too gives it nothing more.
_shared_modes: dict[Path, int] = {}


def share(queue_path: Path, mode: int) -> None:
    """Give the doorbell of ``queue_path`` the group bits of ``mode`` (the queue file's), and
    accept its folder when another user of the group made it."""
    if mode != _DOORBELL_MODE:
        _shared_modes[doorbell_path(queue_path).parent] = mode


def _reset_after_fork() -> None:
    global _registry_lock, _registry
    _registry_lock = threading.Lock()
    _registry = {}


os.register_at_fork(after_in_child=_reset_after_fork)


def listen(path: Path, listener: Listener) -> None:
    """Wake ``listener`` on every ring of the doorbell ``path`` in this process."""
    with _registry_lock:
        _registry.setdefault(path, set()).add(listener)


def unlisten(path: Path, listener: Listener) -> None:
    """Stop waking ``listener`` on rings of ``path``; nothing happens if it did not listen."""
    with _registry_lock:
        listeners = _registry.get(path)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del _registry[path]


def doorbell_path(queue_path: Path) -> Path:
    """Return the doorbell file of ``queue_path``: ``ring`` in the folder named as the resolved
    queue file plus ``-doorbell.d``.

    Resolving (symlinks, relative paths) makes every process agree on one file and one registry key.
    """
    resolved = Path(queue_path).resolve()
    return resolved.with_name(resolved.name + DOORBELL_SUFFIX) / _BELL_NAME


class Doorbell:
    """Rings waiters on one queue file: in this process directly, in others through the file."""

    def __init__(self, queue_path: Path, *, mode: int = _DOORBELL_MODE) -> None:
        share(queue_path, mode)
        self.path = doorbell_path(queue_path)
        self._is_failing = False
        self._is_checked = False  # the folder was found (or made) private
        self._listening: Listening | None = None  # mapped at the first ring
        self._check_at = 0.0  # when to look at the listening file's identity next

    def ring(self) -> None:
        """Wake every waiter of this queue file; call after each commit that makes work available.

        Never raises. If the file cannot be touched, logs one warning (until a ring succeeds
        again): other processes then see the work only at their next poll.
        """
        _wake_listeners(self.path)
        try:
            if not self._is_checked:
                create_doorbell(self.path)
                self._is_checked = True
            if not self._is_needed():
                return  # no waiter looked for work since the last touch: none needs another
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

    def _is_needed(self) -> bool:
        """Whether this ring must touch the file: a waiter set the listening byte since the last
        touch, or the byte is newly mapped, or it cannot be mapped."""
        listening = self._listening
        now = time.monotonic()
        if now < self._check_at:
            return listening is None or listening.take()
        self._check_at = now + LISTENING_CHECK_S
        if listening is not None and listening.is_at_path():
            return listening.take()
        self._listening = None
        if listening is not None:
            listening.close()
        with contextlib.suppress(OSError, ValueError):
            self._listening = Listening(self.path)
            self._listening.take()  # this ring touches the file: earlier looks are answered
        return True


class Listening:
    """The byte every process of one doorbell shares, the first of the ring file (``bell``),
    mapped: set while a waiter that looked for work may sleep through commits made since,
    cleared by the ring that wakes it.

    Writes through the mapping make no file events: only ``os.utime`` wakes the watchers. The
    mapping keeps no descriptor open (``mmap.mmap`` would keep a copy of one per store).
    Raises ``OSError`` when the file cannot be made or mapped (its folder must exist).
    """

    def __init__(self, bell: Path) -> None:
        create_doorbell(bell)  # refuses a folder that is not this user's own
        self.path = bell
        fd = os.open(bell, os.O_RDWR | os.O_NOFOLLOW)
        try:
            info = os.fstat(fd)
            if info.st_size < _LISTENING_BYTES:  # written, not truncated: see _LISTENING_BYTES
                os.pwrite(fd, bytes(_LISTENING_BYTES - info.st_size), info.st_size)
            address = _map_shared(fd, _LISTENING_BYTES)
        finally:
            os.close(fd)
        self._byte = ctypes.c_ubyte.from_address(address)
        self._unmap = weakref.finalize(self, _unmap, address, _LISTENING_BYTES)
        # Never at interpreter exit (a finalizer's default): a daemon thread still running then
        # (a pool under runserver) would write to the unmapped page and crash the process with
        # SIGSEGV. The process's end unmaps it.
        self._unmap.atexit = False
        self._identity = (info.st_dev, info.st_ino)

    def set(self) -> None:
        """Say that a waiter is about to look for work: the next ring must touch the file."""
        self._byte.value = 1

    def take(self) -> bool:
        """Clear the byte; return whether it was set."""
        if self._byte.value:
            self._byte.value = 0
            return True
        return False

    def is_at_path(self) -> bool:
        """Whether the file at the path is still the one mapped."""
        return is_still(self.path, self._identity)

    def close(self) -> None:
        """Unmap the byte; the object cannot be used afterwards."""
        self._byte = ctypes.c_ubyte(0)  # no longer the mapping: a late use cannot fault
        self._unmap()


def is_still(path: Path, identity: tuple[int, int]) -> bool:
    """Whether ``path`` (not following a symlink) is still the file or folder whose
    ``(st_dev, st_ino)`` is ``identity``; False if nothing is there."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == identity


def _libc_mmap() -> tuple[Any, Any] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mmap_, munmap = libc.mmap, libc.munmap
    except (OSError, AttributeError, TypeError):  # no C library to call (not POSIX)
        return None
    mmap_.restype = ctypes.c_void_p
    mmap_.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_ssize_t,
    ]
    munmap.restype = ctypes.c_int
    munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return mmap_, munmap


_LIBC_MMAP = _libc_mmap()
_MAP_FAILED = ctypes.c_void_p(-1).value


def _map_shared(fd: int, length: int) -> int:
    """Map ``length`` bytes of ``fd`` shared, read and write; return the address."""
    if _LIBC_MMAP is None:
        raise OSError("no mmap() to call on this platform")
    address = _LIBC_MMAP[0](None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    if address is None or address == _MAP_FAILED:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return int(address)


def _unmap(address: int, length: int) -> None:
    if _LIBC_MMAP is not None:
        _LIBC_MMAP[1](address, length)


def _wake_listeners(path: Path) -> None:
    if not _registry:  # no waiter in this process (a web process): skip the lock
        return
    with _registry_lock:
        listeners = tuple(_registry.get(path, ()))
    for listener in listeners:
        listener.wake()


def _touch(path: Path) -> None:
    # Not following a symlink: the folder is private (checked once by create_doorbell), so none
    # should be there, and if one is, only the link's own time changes.
    try:
        os.utime(path, follow_symlinks=False)
    except FileNotFoundError:
        create_doorbell(path)
        os.utime(path, follow_symlinks=False)


def create_doorbell(path: Path) -> None:
    """Create the doorbell file and its private folder (shared with the group, see ``share``);
    refuse a folder someone else planted."""
    mode = _shared_modes.get(path.parent, _DOORBELL_MODE)
    folder_mode = _DOORBELL_DIR_MODE | (mode & 0o060) | (0o010 if mode & 0o060 else 0)
    with contextlib.suppress(FileExistsError):  # another process created it first
        os.mkdir(path.parent, _DOORBELL_DIR_MODE)
        if folder_mode != _DOORBELL_DIR_MODE:  # whatever the umask left of it; a setgid bit
            # inherited from a group's folder stays, so the bell gets that group too
            setgid = os.stat(path.parent).st_mode & stat.S_ISGID
            os.chmod(path.parent, folder_mode | setgid)
    problem = doorbell_folder_problem(path.parent)
    if problem is not None:
        raise PermissionError(problem)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _DOORBELL_MODE)
    except FileExistsError:
        return
    try:
        if mode != _DOORBELL_MODE:
            os.fchmod(fd, mode)
    finally:
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
    mine = info.st_uid == os.geteuid()
    shared = folder in _shared_modes and (mine or info.st_gid in {os.getegid(), *os.getgroups()})
    if not mine and not shared:
        return f"{where} belongs to another user (uid {info.st_uid}), not to this one."
    writable_by_others = stat.S_IWOTH if shared else stat.S_IWGRP | stat.S_IWOTH
    if info.st_mode & writable_by_others:
        return f"{where} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o})."
    return None
