"""Notice a queue file deleted, replaced, truncated or overwritten while litetasks runs.

SQLite notices little of this by itself. A deleted (or replaced) file lives on for the
connections that have it open, which go on reading and writing it without an error while every
process that opens the path from then on gets another queue; a -wal or -shm deleted under them
splits the queue in two that overwrite each other (``litetasks/_store/producer.py`` says
how). A truncated or overwritten file fails only once a connection reads a page it does not hold
in memory. The supervisor looks at the files about once a second.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import StoreError
from .connection import COMPANION_SUFFIXES, file_ids
from .copies import count_jobs
from .producer import COMPANION_CHECK_S
from .store import Store

__all__ = ["Damage", "DamageKind", "find_damage", "stop_message"]

logger = logging.getLogger(__name__)

_HEADER = b"SQLite format 3\x00"
_HEADER_BYTES = 100  # a SQLite file starts with a 100-byte header


class DamageKind(enum.Enum):
    """What a ``Damage`` did to the queue: how much of it this process can still save."""

    MOVED = "moved"  # the queue file at the path is another one, or none: ours lives on
    COMPANIONS = "companions"  # its -wal or -shm was replaced: ours lives on, for now
    BROKEN = "broken"  # truncated, overwritten or corrupt: its tasks are lost


@dataclass(frozen=True, slots=True, kw_only=True)
class Damage:
    """What happened to the queue file, and when this process found out (``time.monotonic``)."""

    reason: str
    kind: DamageKind = DamageKind.BROKEN
    found_at_s: float = dataclasses.field(default_factory=time.monotonic)


def find_damage(store: Store) -> Damage | None:
    """Return what is wrong with ``store``'s queue file, or None if it looks intact.

    Permissions are not damage: a file made read-only is reported by whoever opens it next.
    """
    path = store.path
    replaced = store.replaced_files()
    if "queue file" in replaced:
        if not path.exists():
            return Damage(
                reason=f"The queue file {str(path)!r} was deleted.", kind=DamageKind.MOVED
            )
        return Damage(
            reason=f"The queue file {str(path)!r} was replaced by another file (moved, or "
            "deleted and created again).",
            kind=DamageKind.MOVED,
        )
    if replaced:
        return Damage(
            reason=f"The {' and '.join(replaced)} of the queue file {str(path)!r} "
            f"{'was' if len(replaced) == 1 else 'were'} deleted or replaced while in use.",
            kind=DamageKind.COMPANIONS,
        )
    return _damaged_header(path)


def _damaged_header(path: Path) -> Damage | None:
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
    """Say what happened and what to do; save a copy of the queue first if this process can.

    The copy is the old file as this process still sees it, after the workers recorded what
    they could: the tasks it holds would otherwise be lost when this process exits. It is
    taken after the pool stopped, so it holds every task a producer enqueued into the old file
    (a producer takes back what it writes there once it notices, and notices within 0.1 s).
    """
    path = store.path
    if damage.kind is DamageKind.BROKEN:
        return (
            f"{damage.reason} litetasks stopped; the tasks in it are lost. Stop every process "
            f"that uses it, move {str(path)!r} and its -wal file aside (keep them for "
            "inspection), then start litetasks again: it creates a new queue file."
        )
    copied = _before_copy(damage, store)
    copy = path.with_name(f"{path.name}.saved-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    try:
        store.copy_to(copy)
        saved = f"saved the {count_jobs(copy):,} tasks it held as {str(copy)!r}"
    except (StoreError, OSError) as exc:
        return (
            f"{damage.reason} litetasks stopped. Its tasks could not be saved ({exc}). Stop "
            f"every process that uses the queue, then start litetasks again to serve the queue "
            f"file now at {str(path)!r}."
        )
    return _after_copy(damage, store, copied, saved, copy)


def _before_copy(damage: Damage, store: Store) -> str:
    """Wait for producers and checkpoint, when the -wal or -shm was replaced; say what it did.

    Producers look at the -wal and -shm every COMPANION_CHECK_S: until all have, they may
    acknowledge tasks committed into the old files, which the copy must hold.
    """
    if damage.kind is not DamageKind.COMPANIONS:
        return ""
    time.sleep(max(0.0, damage.found_at_s + 3 * COMPANION_CHECK_S - time.monotonic()))
    copied = _checkpoint_if_safe(store)
    store.abandon()  # its WAL index may describe another -wal from now on
    return copied


def _after_copy(damage: Damage, store: Store, copied: str, saved: str, copy: Path) -> str:
    """What to do once the queue was saved as ``copy``, by what happened to it."""
    path = store.path
    merge = (
        f"run `litetasks merge {copy}`: it adds to the queue file the tasks it lacks, and never "
        "changes one it has"
    )
    if damage.kind is DamageKind.COMPANIONS:
        return (
            f"{damage.reason} Processes that opened the queue since cannot read it (disk I/O "
            f"error), and the old and new files would overwrite each other's tasks. litetasks "
            f"stopped{copied} and {saved}. Stop every process that uses the queue (web processes "
            f"too), start litetasks again, then {merge}."
        )
    if _shares_companions(store):
        return (
            f"{damage.reason} The new file shares the old one's -wal and -shm, so the two would "
            f"overwrite each other's tasks. litetasks stopped and {saved}. Stop every process "
            f"that uses the queue, move {str(path)!r} and its -wal and -shm aside, start "
            f"litetasks again, then {merge}."
        )
    removed = _remove_leftovers(store)
    return (
        f"{damage.reason} litetasks stopped and {saved}"
        f"{removed}. Start litetasks again, then {merge}."
    )


def _checkpoint_if_safe(store: Store) -> str:
    """Copy the deleted -wal this process still has open into the queue file, if that is safe.

    The queue file then holds every task this process saw: a pool started on it later does not
    run again what finished meanwhile. Safe only while the WAL index (-shm) is still the one
    that describes that -wal: no process that opened the queue since wrote a frame into a -wal
    of its own (which starts with its 32-byte header). Says what it did, for the message.
    """
    if store.replaced_files() != ["-wal"]:
        return ""  # the -shm too: another index may be writing into the same WAL
    try:
        new_wal_bytes = os.stat(f"{store.real_path}-wal").st_size
    except FileNotFoundError:
        new_wal_bytes = 0
    if new_wal_bytes >= _WAL_HEADER_BYTES:
        return ""
    try:
        frames, copied = store.checkpoint()
    except StoreError as exc:
        logger.warning("Could not copy the deleted -wal into %s: %s", store.path, exc)
        return ""
    if frames != copied:
        return ""
    return ", copied the tasks of the deleted -wal it still had open into the queue file,"


_WAL_HEADER_BYTES = 32


def _shares_companions(store: Store) -> bool:
    """Whether a new queue file sits beside the -wal or -shm of the one ``store`` opened."""
    if not os.path.lexists(store.real_path):
        return False
    now = file_ids(store.path, store.real_path)
    return any(
        found is not None and found == opened
        for opened, found in zip(store.opened_files[1:], now[1:], strict=True)
    )


def _remove_leftovers(store: Store) -> str:
    """Delete the -wal and -shm at the path of a moved or deleted queue file; say so.

    They are still the old file's (its tasks are saved by then): SQLite would put a new queue
    file created beside them together with them (see ``litetasks/_store/producer.py``), so
    every new process refuses to open the queue until they are gone. Producers still holding the old
    file keep their own open copies; they take back what they write into it.
    """
    if os.path.lexists(store.real_path):
        return ""
    now = file_ids(store.path, store.real_path)
    removed = []
    for suffix, opened, found in zip(
        COMPANION_SUFFIXES, store.opened_files[1:], now[1:], strict=True
    ):
        if found is not None and found == opened:
            os.unlink(f"{store.real_path}{suffix}")
            removed.append(suffix)
    if not removed:
        return ""
    logger.warning("Deleted the %s of the old queue file %s", " and ".join(removed), store.path)
    return f", then deleted the old file's {' and '.join(removed)} at that path"
