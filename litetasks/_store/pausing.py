"""Pause and resume queues and periodic schedules, kept in the queue file (table ``paused``).

A paused queue is claimed by no worker until resumed; a paused periodic schedule enqueues no
slots (the slots that come due meanwhile are skipped, not caught up at resume). Both survive
restarts: they are rows of the file, not state of a process.

Claims must not pay for this: a claim reads the paused queues from a copy kept on the handle,
read again from the file at most every ``REFRESH_S`` seconds (inside a claim's transaction,
so one read per second per worker, not one per claim). A pool so notices a pause or a resume
by another process within about a second; this handle's own pause and resume at once.
"""

from __future__ import annotations

import time
from typing import Any

import apsw

from .handle import Handle

__all__ = [
    "QUEUE",
    "REFRESH_S",
    "SCHEDULE",
    "Pausing",
    "is_paused",
    "pause",
    "paused",
    "paused_queues_for_claim",
    "resume",
]

QUEUE = "queue"
SCHEDULE = "schedule"
# How stale a handle's copy of the paused queues may be (seconds).
REFRESH_S = 1.0

_PAUSE = """
INSERT INTO paused (kind, name, paused_at) VALUES (:kind, :name, :now)
ON CONFLICT (kind, name) DO NOTHING
"""
_RESUME = "DELETE FROM paused WHERE kind = :kind AND name = :name"
_PAUSED = "SELECT name FROM paused WHERE kind = ?"


def pause(handle: Handle, kind: str, name: str) -> bool:
    """Pause the queue or schedule ``name``; False if it was paused already."""
    _check_name(kind, name)
    with handle.write() as db:
        db.execute(_PAUSE, {"kind": kind, "name": name, "now": handle.now()})
        changed = db.changes() == 1
    _forget(handle)
    return changed


def resume(handle: Handle, kind: str, name: str) -> bool:
    """Resume the queue or schedule ``name``; False if it was not paused."""
    _check_name(kind, name)
    with handle.write() as db:
        db.execute(_RESUME, {"kind": kind, "name": name})
        changed = db.changes() == 1
    _forget(handle)
    if changed and kind == QUEUE:
        handle.ready()  # its READY jobs are claimable again: sleepers re-plan
    return changed


def paused(handle: Handle, kind: str) -> set[str]:
    """The names of the paused queues or schedules, read from the file now."""
    with handle.translated:
        return _read(handle.db, kind)


def paused_queues_for_claim(handle: Handle, db: apsw.Connection | None = None) -> frozenset[str]:
    """The paused queues as a claim sees them: the handle's copy, read again when it is older
    than ``REFRESH_S`` (in the caller's transaction when ``db`` is given)."""
    cache = handle.paused_queues
    if time.monotonic() - cache[0] < REFRESH_S:
        return cache[1]
    if db is None:
        with handle.translated:
            names = frozenset(_read(handle.db, QUEUE))
    else:
        names = frozenset(_read(db, QUEUE))
    handle.paused_queues = (time.monotonic(), names)
    return names


def is_paused(db: apsw.Connection, kind: str, name: str) -> bool:
    """Whether ``name`` is paused, read in the caller's transaction."""
    row: Any = db.execute(
        "SELECT 1 FROM paused WHERE kind = ? AND name = ?", (kind, name)
    ).fetchone()
    return row is not None


def _read(db: apsw.Connection, kind: str) -> set[str]:
    return {str(row[0]) for row in db.execute(_PAUSED, (kind,))}


def _forget(handle: Handle) -> None:
    handle.paused_queues = (float("-inf"), frozenset())


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"A {kind} name must be a non-empty string, not {name!r}.")


class Pausing:
    """Pause and resume on one queue file (``Store.pausing``), read and written now."""

    def __init__(self, handle: Handle) -> None:
        self._handle = handle

    def pause_queue(self, name: str) -> bool:
        """Pause the queue ``name``: no worker claims its tasks until it is resumed (workers
        notice within about a second). False if it was paused already."""
        return pause(self._handle, QUEUE, name)

    def resume_queue(self, name: str) -> bool:
        """Resume the paused queue ``name``; False if it was not paused."""
        return resume(self._handle, QUEUE, name)

    def paused_queues(self) -> set[str]:
        """Return the names of the paused queues."""
        return paused(self._handle, QUEUE)

    def pause_schedule(self, name: str) -> bool:
        """Pause the periodic schedule ``name``: its slots are skipped until it is resumed.
        False if it was paused already."""
        return pause(self._handle, SCHEDULE, name)

    def resume_schedule(self, name: str) -> bool:
        """Resume the paused periodic schedule ``name`` from its next slot; False if it was
        not paused."""
        return resume(self._handle, SCHEDULE, name)

    def paused_schedules(self) -> set[str]:
        """Return the names of the paused periodic schedules."""
        return paused(self._handle, SCHEDULE)
