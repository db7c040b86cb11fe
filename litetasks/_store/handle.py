"""One open connection to the queue file, and what every part of the store shares through it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw

from .clock import Clock
from .connection import (
    FileIds,
    MovedCheck,
    TranslatedErrors,
    file_ids,
    immediate,
    open_connection,
)
from .schema import migrate

__all__ = ["Handle"]


class Handle:
    """A connection to one queue file with the store's clock and its ready callback.

    Not thread-safe, like the connection: one per thread. The parts of the store (enqueueing,
    claiming, recording, workers, actions, reading, maintenance) are functions of a handle.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        busy_timeout_ms: int,
        clock: Clock,
        on_ready: Callable[[], None] | None,
    ) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        # Turns apsw errors into StoreErrors that say what happened and what to do: ``with
        # handle.translated:`` (one instance serves every call; see TranslatedErrors).
        self.translated = TranslatedErrors(path, busy_timeout_ms)
        self.now = clock
        # Called after every commit that makes a job READY (the backend rings its doorbell
        # here), so sleeping workers claim it at once.
        self.ready = on_ready or _nothing
        # Whether the current write transaction enqueued a hook's job (``write()`` resets it).
        self.hooked = False
        self.db = open_connection(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        # The file SQLite opened: ``path`` with every symlink followed.
        self.real_path = Path(self.db.filename)
        self.has_moved = MovedCheck(self.db)
        with self.translated:
            migrate(self.db)  # a read in WAL mode: the -wal and -shm are open from here on
        self.opened_files: FileIds = file_ids(self.path, self.real_path)

    def max_row_bytes(self) -> int:
        """Return the most bytes one row may take (SQLite's ``SQLITE_LIMIT_LENGTH``)."""
        return int(self.db.limit(apsw.SQLITE_LIMIT_LENGTH))

    @contextlib.contextmanager
    def write(self) -> Iterator[apsw.Connection]:
        """Run the block in one ``BEGIN IMMEDIATE`` transaction, with errors translated."""
        with self.translated, immediate(self.db) as db:
            self.hooked = False
            yield db


def _nothing() -> None:
    pass
