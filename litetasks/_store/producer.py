"""Enqueue only into the queue file that workers read, even while someone moves or deletes it.

What SQLite does when a WAL-mode file is moved or deleted under open connections (measured with
SQLite 3.54 on Linux; SQLite's "How To Corrupt An SQLite Database File", section 2.4):

- A connection keeps its file descriptors. It goes on reading and writing the old file (moved:
  under its new name; deleted: an inode no one can open again) without any error. The only
  sign is SQLITE_FCNTL_HAS_MOVED, which compares the inode at the path with the open one.
  SQLITE_READONLY_DBMOVED is raised only when a rollback journal is opened, never in WAL mode;
  what WAL mode does differently is skip the checkpoint when a moved connection closes, so
  what is in its -wal never reaches the moved file.
- ``mv`` or ``rm`` of the queue file alone leaves its -wal and -shm at the path, still used by
  the old connections. A new connection to the path creates an empty file, deletes that -wal
  (its file is empty), makes a new one and shares the old -shm: its first commit resets the
  WAL index the old connections use. They then read pages from the wrong WAL ("file is not a
  database") and their checkpoints copy those into the moved file, which became unreadable:
  every task in its -wal was lost. ``open_connection`` therefore refuses to create a queue
  file beside an old -wal or -shm.
- ``mv`` or ``rm`` of all three files leaves two separate databases: the old one for the
  connections that had it open, a new one for everyone else.
- Deleting the -wal alone: new connections find a new, empty -wal and the old index, which
  promises frames it lacks ("disk I/O error", a short read), until the old connections have
  checkpointed their deleted -wal completely; after that the new connections' commits restart
  the index, and the old connections read the new frames from their deleted -wal: their reads
  go wrong and their commits are lost. Deleting the -shm alone lets two indexes of one WAL
  overwrite each other's frames. Only stopping every process that had the files open ends it.

So a producer checks after every commit that the queue file at the path is still the one it
wrote into (``Store.has_moved``: 0.6 µs alone; in a loop of ``enqueue()`` calls of about 45 µs
each, 1.5 to 2.7 µs more on a shared 2-core machine), and every 0.1 s that the -wal and -shm
are too (``Store.replaced_files``, three stats: 7 µs). When the file was moved, deleted or
replaced it takes its jobs back from the old file (those a worker took meanwhile stay: the pool
served that file) and writes them into the file now at the path, or raises ``StoreError`` when
none can be opened safely there; either way nothing is acknowledged into a file no worker will
read. When the -wal or -shm was replaced, this process enqueues nothing more into that queue
file (it says to restart every process that uses it), and ``litetasks run`` saves what its
pool still sees once every producer has had the time to notice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from ..exceptions import StoreError
from .config import StoreConfig
from .doorbell import Doorbell
from .records import JobRecord, NewJob
from .store import Store

__all__ = ["COMPANION_CHECK_S", "enqueue", "enqueue_unique", "thread_store"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

# How often a producer looks at the -wal and -shm as well (the queue file: at every commit).
# Far below the second the supervisor takes to notice, stop its pool and save what it sees.
COMPANION_CHECK_S = 0.1
# A file moved again while its jobs were being written anew: give up after this many moves.
_MAX_MOVES = 3

# One Store per (thread, queue file), for the last _STORES_PER_THREAD queue files the thread
# used: an older one is let go, and closed once no caller holds it. Unbounded, a thread that
# meets new queue files again and again (a test suite with one per test, a queue file per
# tenant) kept three descriptors per file until the process ran out of them. A thread that
# ends closes its Stores. A connection must never cross fork(), so a Store opened by another
# process (we are a forked child) is abandoned, never closed: closing it could disturb the
# parent's locks (SQLite "How To Corrupt", section 2.6). So is a Store whose file was moved or
# deleted: it is kept, unused, until the process ends.
_STORES_PER_THREAD = 8
_stores = threading.local()
_abandoned: list[Store] = []
# Queue files this process no longer enqueues into (their -wal or -shm was replaced): why.
_refused: dict[Path, str] = {}


class _Entry:
    """This thread's store for one queue file, and when to look at its -wal and -shm next."""

    __slots__ = ("next_check", "pid", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pid = os.getpid()
        self.next_check = time.monotonic() + COMPANION_CHECK_S


def thread_store(config: StoreConfig) -> Store:
    """Return this thread's ``Store`` for ``config.path``, opening it on first use.

    A caller may keep it: one the cache lets go is closed only when nothing holds it.
    """
    return _entry(config).store


def _entry(config: StoreConfig) -> _Entry:
    cache: OrderedDict[Path, _Entry] | None = getattr(_stores, "by_path", None)
    if cache is None:
        cache = _stores.by_path = OrderedDict()
    entry = cache.get(config.path)
    if entry is not None:
        if entry.pid == os.getpid():
            cache.move_to_end(config.path)  # the most recently used last
            return entry
        del cache[config.path]
        _abandoned.append(entry.store)
    store = Store(
        config.path,
        synchronous=config.synchronous,
        busy_timeout_ms=config.busy_timeout_ms,
        on_ready=Doorbell(config.path, mode=config.file_mode).ring,
        file_mode=config.file_mode,
    )
    entry = cache[config.path] = _Entry(store)
    while len(cache) > _STORES_PER_THREAD:
        _, oldest = cache.popitem(last=False)
        if oldest.pid != os.getpid():
            _abandoned.append(oldest.store)
    return entry


def _forget(config: StoreConfig, entry: _Entry) -> None:
    cache: OrderedDict[Path, _Entry] = _stores.by_path
    if cache.get(config.path) is entry:
        del cache[config.path]
    _abandoned.append(entry.store)


def enqueue(config: StoreConfig, jobs: Sequence[NewJob]) -> int:
    """``Store.enqueue(jobs)`` into the queue file at ``config.path``; return ``enqueued_at``.

    Raises ``StoreError`` when the jobs cannot be put into the file now at that path.
    """
    return _enqueue(config, jobs, 0)


def enqueue_unique(
    config: StoreConfig, jobs: Sequence[NewJob]
) -> tuple[int, list[JobRecord | None]]:
    """``Store.enqueue_unique(jobs)`` into the queue file at ``config.path``, as ``enqueue``."""
    return _enqueue_unique(config, jobs, 0)


def _enqueue(config: StoreConfig, jobs: Sequence[NewJob], moves: int) -> int:
    entry = _producer_entry(config)
    enqueued_at_us = entry.store.enqueue(jobs)
    if _is_still_there(entry):
        return enqueued_at_us
    again = _taken_back(config, entry, jobs, moves)
    if not again:
        return enqueued_at_us
    return _again(config, again, moves, lambda: _enqueue(config, again, moves + 1))


def _enqueue_unique(
    config: StoreConfig, jobs: Sequence[NewJob], moves: int
) -> tuple[int, list[JobRecord | None]]:
    entry = _producer_entry(config)
    enqueued_at_us, twins = entry.store.enqueue_unique(jobs)
    if _is_still_there(entry):
        return enqueued_at_us, twins
    inserted = [job for job, twin in zip(jobs, twins, strict=True) if twin is None]
    again = _taken_back(config, entry, inserted, moves)
    if not again:
        return enqueued_at_us, twins
    enqueued_at_us, new_twins = _again(
        config, again, moves, lambda: _enqueue_unique(config, again, moves + 1)
    )
    by_id = {job.job_id: twin for job, twin in zip(again, new_twins, strict=True)}
    twins = [by_id.get(job.job_id, twin) for job, twin in zip(jobs, twins, strict=True)]
    return enqueued_at_us, twins


def _producer_entry(config: StoreConfig) -> _Entry:
    if _refused and config.path in _refused:
        raise StoreError(_refused[config.path], path=str(config.path))
    return _entry(config)


def _is_still_there(entry: _Entry) -> bool:
    """Whether the files at the path are still the ones ``entry``'s store writes into."""
    store = entry.store
    if store.has_moved():
        return False
    now = time.monotonic()
    if now < entry.next_check:
        return True
    entry.next_check = now + COMPANION_CHECK_S
    return not store.replaced_files()


def _taken_back(
    config: StoreConfig, entry: _Entry, jobs: Sequence[NewJob], moves: int
) -> list[NewJob]:
    """Take ``jobs`` back from a file that is no longer at the path; return those to write again.

    A -wal or -shm replaced: raises ``StoreError``, and this process refuses every later
    enqueue into that queue file. Every job acknowledged before was committed less than
    ``COMPANION_CHECK_S`` after the replacement, so ``litetasks run`` saves it (it waits that
    long after noticing before it saves what it sees).
    """
    store = entry.store
    replaced = store.replaced_files()
    path = str(config.path)
    if not replaced:  # put back between the two looks: nothing to do
        return []
    _forget(config, entry)
    if "queue file" not in replaced:
        _refuse_companions(config, store, replaced, jobs)
    try:
        withdrawn = set(store.withdraw([job.job_id for job in jobs]))
    except StoreError as exc:
        raise StoreError(
            f"The queue file {path!r} was moved, deleted or replaced while {len(jobs)} task(s) "
            f"were enqueued, and they could not be taken back from the old file ({exc}). They "
            f"may be in it: ids {', '.join(job.job_id for job in jobs)}. Nothing was written "
            "to the file now at that path.",
            path=path,
        ) from exc
    if moves == 0:
        logger.error(
            "The queue file %s was moved, deleted or replaced while this process used it; "
            "enqueueing into the file now at that path",
            path,
        )
    return [job for job in jobs if job.job_id in withdrawn]


def _refuse_companions(
    config: StoreConfig, store: Store, replaced: Sequence[str], jobs: Sequence[NewJob]
) -> NoReturn:
    """The -wal or -shm was replaced: enqueue nothing more into that queue file, from now on.

    ``jobs`` are not taken back: a write could now corrupt what a process that opened the
    queue since wrote. Committed after the last look (0.1 s ago at most, while the pool may
    have stopped and saved the old files), so refused: they may still run (see damage.py).
    """
    path = str(config.path)
    store.abandon()
    _refused[config.path] = _companions_replaced(path, replaced)
    logger.error("%s", _refused[config.path])
    raise StoreError(
        f"{_refused[config.path]} This call's {len(jobs)} task(s) may still run: they were "
        f"stored before that was noticed (ids {', '.join(job.job_id for job in jobs)}).",
        path=path,
    )


def _again(config: StoreConfig, jobs: Sequence[NewJob], moves: int, write: Callable[[], T]) -> T:
    """Write ``jobs`` (taken back from the old file) into the file now at the path."""
    path = str(config.path)
    if moves + 1 >= _MAX_MOVES:
        raise StoreError(
            f"The queue file {path!r} was moved or deleted {_MAX_MOVES} times while "
            f"{len(jobs)} task(s) were enqueued; they were not enqueued.",
            path=path,
        )
    try:
        return write()
    except StoreError as exc:
        raise StoreError(
            f"The queue file {path!r} was moved, deleted or replaced while {len(jobs)} task(s) "
            f"were enqueued; they were taken back from the old file and not enqueued: {exc}",
            path=path,
        ) from exc


def _companions_replaced(path: str, replaced: Sequence[str]) -> str:
    names = " and ".join(replaced)
    return (
        f"The {names} of the queue file {path!r} {'was' if len(replaced) == 1 else 'were'} "
        "deleted or replaced while this process had the queue open, so this process enqueues "
        "nothing more into it: its commits could be lost, or overwrite those of processes that "
        "opened the queue since. Restart this process and every other that uses the queue; "
        "see 'When the queue file is damaged' in the README."
    )
