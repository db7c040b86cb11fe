"""Notice a queue file deleted, replaced, truncated or overwritten while litetasks runs.

SQLite notices little of this by itself. A deleted (or replaced) file lives on for the
connections that have it open, which go on reading and writing it without an error while every
process that opens the path from then on gets another, empty queue: tasks would be enqueued
where no worker looks. A truncated or overwritten file fails only once a connection reads a
page it does not hold in memory. The supervisor looks at the file about once a second.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .exceptions import StoreError
from .store import Store

__all__ = ["Damage", "find_damage", "stop_message"]

logger = logging.getLogger(__name__)

_HEADER = b"SQLite format 3\x00"
_HEADER_BYTES = 100  # a SQLite file starts with a 100-byte header


@dataclass(frozen=True, slots=True, kw_only=True)
class Damage:
    """What happened to the queue file; ``is_moved``: this process still sees the old one."""

    reason: str
    is_moved: bool = False


def find_damage(store: Store) -> Damage | None:
    """Return what is wrong with ``store``'s queue file, or None if it looks intact.

    Permissions are not damage: a file made read-only is reported by whoever opens it next.
    """
    path = store.path
    if store.has_moved():
        if not path.exists():
            return Damage(reason=f"The queue file {str(path)!r} was deleted.", is_moved=True)
        return Damage(
            reason=f"The queue file {str(path)!r} was replaced by another file (moved, or "
            "deleted and created again).",
            is_moved=True,
        )
    try:
        with open(path, "rb") as file:
            head = file.read(_HEADER_BYTES)
    except OSError:
        return None
    if len(head) < _HEADER_BYTES:
        return Damage(reason=f"The queue file {str(path)!r} was truncated to {len(head)} bytes.")
    if not head.startswith(_HEADER):
        return Damage(
            reason=f"The queue file {str(path)!r} was overwritten: it is not a SQLite database "
            "any more."
        )
    return None


def stop_message(damage: Damage, store: Store) -> str:
    """Say what happened and what to do; for a deleted or replaced file, save a copy first.

    The copy is the old file as this process still sees it, after the workers recorded what
    they could: the tasks it holds would otherwise be lost when this process exits.
    """
    path = store.path
    if damage.is_moved:
        copy = path.with_name(f"{path.name}.saved-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        try:
            store.copy_to(copy)
        except (StoreError, OSError) as exc:
            return (
                f"{damage.reason} litetasks stopped. Its tasks could not be saved ({exc}). "
                "Start litetasks again to serve the queue file now at that path."
            )
        return (
            f"{damage.reason} litetasks stopped and saved the tasks it held as {str(copy)!r}. "
            f"Stop every process that uses the queue (web processes too: they may still write "
            f"to the old file), move the copy to {str(path)!r} (or delete it to start afresh), "
            "then start litetasks again."
        )
    return (
        f"{damage.reason} litetasks stopped; the tasks in it are lost. Stop every process that "
        f"uses it, move {str(path)!r} and its -wal file aside (keep them for inspection), then "
        "start litetasks again: it creates a new queue file."
    )
