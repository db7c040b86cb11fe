"""How a connection shares the queue file with other writers: it waits for the write lock on a
short timer, and it keeps the WAL short while others go on writing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import apsw

__all__ = [
    "WAL_CHECKPOINT_PAGES",
    "WAL_CHECKPOINT_STEP",
    "WAL_RESTART_WAIT_MS",
    "checkpoint_and_restart",
    "connection_bounded_wal",
    "connection_busy_timeout",
    "waiting_at_most",
]


def connection_busy_timeout(connection: apsw.Connection, busy_timeout_ms: int) -> None:
    """Wait for a competing writer instead of failing with SQLITE_BUSY at once.

    SQLite's own busy handler sleeps 1, 2, 5, 10 … ms between tries. Queue transactions last
    tens of microseconds, so those sleeps, not the lock, would set the pace whenever two
    processes write at once. This handler retries after 50 µs, backing off to 5 ms.
    """
    deadline_s = busy_timeout_ms / 1000
    waited_s = 0.0

    def busy(tries: int) -> bool:
        # apsw passes the number of earlier tries in this wait (0 first); True: try again.
        nonlocal waited_s
        if tries == 0:
            waited_s = 0.0
        if waited_s >= deadline_s:
            return False
        pause = min(_BUSY_MIN_S * 2 ** min(tries, 10), _BUSY_MAX_S, deadline_s - waited_s)
        time.sleep(pause)
        waited_s += pause
        return True

    connection.set_busy_handler(busy)


_BUSY_MIN_S = 0.00005
_BUSY_MAX_S = 0.005


@contextlib.contextmanager
def waiting_at_most(
    connection: apsw.Connection, busy_timeout_ms: int, then_ms: int
) -> Iterator[apsw.Connection]:
    """Wait at most ``busy_timeout_ms`` for a lock inside the block, ``then_ms`` (the
    connection's own timeout) again after it."""
    connection_busy_timeout(connection, busy_timeout_ms)
    try:
        yield connection
    finally:
        connection_busy_timeout(connection, then_ms)


# A commit that leaves the WAL this long (pages) checkpoints it (see below).
WAL_CHECKPOINT_PAGES = 10_000
# While the WAL stays that long, a connection checkpoints again only after this many more pages.
WAL_CHECKPOINT_STEP = 1_000
# How long (ms) a checkpoint waits, holding off writers, for the WAL to be free to start over.
WAL_RESTART_WAIT_MS = 5


def connection_bounded_wal(connection: apsw.Connection, busy_timeout_ms: int) -> None:
    """Checkpoint from a commit only when the WAL is long; truncate it back to 64 MiB after.

    A commit that takes the WAL past ``WAL_CHECKPOINT_PAGES`` runs a checkpoint before it
    returns (``checkpoint_and_restart``), while its caller (an ``enqueue()``, a worker's
    dispatcher) waits. Workers checkpoint every second from their maintenance thread instead
    (``Store.checkpoint_restart``), so commits seldom reach the limit; 10,000 pages (40 MB)
    bounds the WAL when no worker runs.

    SQLite's own rule (``wal_autocheckpoint``) checkpoints after every commit for as long as
    the WAL stays past the limit, and it stays there while other processes keep writing (see
    ``checkpoint_and_restart``): 8 producers with no worker then paid a checkpoint and two
    fdatasyncs at almost every commit (7,102 for 16,000 enqueues). Here a connection
    checkpoints once more only after ``WAL_CHECKPOINT_STEP`` more pages.
    """
    # One statement per execute(): apsw runs a string's statements one by one as its cursor is
    # read, so a statement after one that returns a row (this PRAGMA does) would never run.
    connection.execute("PRAGMA journal_size_limit = 67108864").fetchall()
    connection.set_wal_hook(_WalCheckpoints(busy_timeout_ms))


def checkpoint_and_restart(
    connection: apsw.Connection, busy_timeout_ms: int, name: str = "main"
) -> tuple[int, int]:
    """Copy the WAL into the queue file, then have the next commit write it from the start;
    return ``(wal_frames, frames_checkpointed)`` as the second checkpoint left them.

    A passive checkpoint copies the WAL while others go on committing, but the WAL starts over
    only at a commit that begins once every frame in it was copied. While other processes keep
    committing, with a little work between their commits as web processes have, that moment
    never comes: 8 producers and no worker grew a 1.8 GB -wal beside a 65 MB queue file, and
    every checkpoint, lookup and commit got slower with it (17,155 enqueues/s instead of
    24,091; slowest call 373 ms instead of 31). So a RESTART checkpoint follows the passive
    one: it takes the write lock, copies the few frames committed meanwhile and waits for the
    WAL's readers to finish, at most ``WAL_RESTART_WAIT_MS``, holding off writers that long.
    When it cannot (a long read, a writer that keeps the lock), SQLite gives up on it, it
    raises ``apsw.BusyError``, and nothing is lost: the next checkpoint tries again.
    """
    connection.wal_checkpoint(name, apsw.SQLITE_CHECKPOINT_PASSIVE)
    with waiting_at_most(connection, WAL_RESTART_WAIT_MS, busy_timeout_ms):
        frames: tuple[int, int] = connection.wal_checkpoint(name, apsw.SQLITE_CHECKPOINT_RESTART)
    return frames


class _WalCheckpoints:
    """A connection's WAL hook (called after each of its commits with the WAL's length in
    pages): the checkpoints ``connection_bounded_wal`` describes."""

    __slots__ = ("_busy_timeout_ms", "_due_at", "_pages")

    def __init__(self, busy_timeout_ms: int) -> None:
        self._busy_timeout_ms = busy_timeout_ms  # the connection's, set again after a checkpoint
        self._due_at = WAL_CHECKPOINT_PAGES  # checkpoint when the WAL is this long
        self._pages = 0  # its length at this connection's last commit

    def __call__(self, connection: apsw.Connection, name: str, pages: int) -> int:
        if pages < self._pages:  # the WAL started over: back to the first limit
            self._due_at = WAL_CHECKPOINT_PAGES
        self._pages = pages
        if pages >= self._due_at:
            self._due_at = pages + WAL_CHECKPOINT_STEP
            # A failed checkpoint loses nothing: the next one (a worker's, or this one's
            # after another step) copies the same pages.
            with contextlib.suppress(apsw.Error):
                checkpoint_and_restart(connection, self._busy_timeout_ms, name)
        return apsw.SQLITE_OK
