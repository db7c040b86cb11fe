"""Look after the queue file: checkpoints, copies, integrity, and whether it is still there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .connection import (
    create_private_file,
    file_ids,
    no_checkpoint_on_close,
)
from .handle import Handle
from .sharing import checkpoint_and_restart, waiting_at_most

__all__ = [
    "abandon",
    "checkpoint",
    "checkpoint_restart",
    "copy_to",
    "integrity_check",
    "replaced_files",
]

_FILE_NAMES = ("queue file", "-wal", "-shm")  # in the order of ``file_ids``


def checkpoint(handle: Handle) -> tuple[int, int]:
    """Checkpoint the WAL and truncate it; return ``(wal_frames, frames_checkpointed)``.

    When a reader holds an old snapshot the checkpoint cannot finish; ``wal_frames`` larger
    than ``frames_checkpointed`` says so. It never waits: a TRUNCATE checkpoint that waited
    for readers would hold off every writer meanwhile.
    """
    with handle.translated, waiting_at_most(handle.db, 0, handle.busy_timeout_ms) as db:
        row: Any = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    _busy, log, done = row  # all copied but not truncated: the WAL is reused, not grown
    return int(log), int(done)


def checkpoint_restart(handle: Handle) -> None:
    """Copy the WAL into the queue file, then let it start over (``checkpoint_and_restart``:
    writers wait only for the last frames and at most ``WAL_RESTART_WAIT_MS`` for readers)."""
    with handle.translated:
        checkpoint_and_restart(handle.db, handle.busy_timeout_ms)


def replaced_files(handle: Handle) -> list[str]:
    """Name the files at the path that are not the ones this handle opened.

    ``"queue file"`` when it was deleted, moved away or replaced (or the symlink at the path
    now points elsewhere); ``"-wal"``, ``"-shm"`` for those. ``handle.has_moved()`` (0.6 µs)
    answers for the queue file alone.
    """
    now = file_ids(handle.path, handle.real_path)
    names = [
        name
        for name, opened, found in zip(_FILE_NAMES, handle.opened_files, now, strict=True)
        if opened != found
    ]
    if handle.has_moved() and _FILE_NAMES[0] not in names:
        names.insert(0, _FILE_NAMES[0])
    return names


def abandon(handle: Handle) -> None:
    """Make closing the connection leave the WAL alone; it is not used again.

    For a connection whose -wal or -shm was replaced: see ``no_checkpoint_on_close``.
    """
    no_checkpoint_on_close(handle.db)


def copy_to(handle: Handle, target: Path) -> None:
    """Write a copy of the queue, as this connection sees it, to the new file ``target``."""
    create_private_file(target)
    with handle.translated:
        handle.db.execute("VACUUM INTO ?", (str(target),))


def integrity_check(handle: Handle) -> str:
    """Run ``PRAGMA integrity_check`` and return its first line (``ok`` when healthy)."""
    with handle.translated:
        return str(handle.db.execute("PRAGMA integrity_check").get)
