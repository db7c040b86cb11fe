"""Copies of the queue file: a consistent backup of a live queue, and merging a saved copy back.

``backup`` uses SQLite's online backup API. ``cp`` of a live queue file copies pages from
different moments (and misses what is only in the -wal), so a copy taken that way is consistent
only by luck. ``merge`` adds to the queue file the jobs of a saved copy that it lacks, by job
id, and never changes a job it has: the way back after the queue file was moved or deleted
while in use (``litetasks run`` then saves what it held, see ``damage.py``), or from a backup.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from ..exceptions import StoreError
from .connection import TranslatedErrors, create_private_file, immediate, open_connection, real_path
from .doorbell import Doorbell
from .schema import migrate
from .store import Store

__all__ = ["Copied", "Merged", "backup", "count_jobs", "merge"]

_OPEN_FLAGS = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOFOLLOW

# The files SQLite may keep beside a database, removed with it by --force.
_BESIDE = ("-wal", "-shm", "-journal")


@dataclass(frozen=True, slots=True, kw_only=True)
class Copied:
    """What ``backup`` wrote: jobs per state, the size of the copy, how long it took."""

    path: Path
    counts: dict[str, int]
    size_bytes: int
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Merged:
    """What ``merge`` did: jobs in the copy, those added (per state), and those skipped as
    twins of a unique task READY or RUNNING in the queue file."""

    saved_jobs: int
    added: dict[str, int]
    twins: list[str]


def count_jobs(path: Path) -> int:
    """Return how many jobs the queue file (or copy) at ``path`` holds."""
    connection = apsw.Connection(str(path), flags=_OPEN_FLAGS)
    try:
        return sum(_job_counts(connection).values())
    finally:
        connection.close()


def _job_counts(connection: apsw.Connection) -> dict[str, int]:
    rows: list[Any] = connection.execute(
        "SELECT state, count(*) FROM jobs GROUP BY state"
    ).fetchall()
    return {str(state): int(count) for state, count in rows}


def backup(source: Path, dest: Path, *, force: bool = False, busy_timeout_ms: int = 5000) -> Copied:
    """Copy the queue file ``source``, while it is in use, to the new file ``dest`` (mode 0600).

    The copy is one snapshot, taken in one step: in WAL mode a reader never holds off writers,
    while a backup taken in several steps starts again whenever another process commits (a
    63 MB queue file with one producer committing each millisecond: 2,090 restarts in 3 s,
    never done; in one step: 0.11 s, the producer's commits no slower). Checkpoints wait for it.
    Refuses an existing ``dest`` unless ``force``.
    """
    started = time.monotonic()
    source = real_path(source)
    if not source.is_file():
        raise StoreError(f"There is no queue file at {str(source)!r} to back up.", path=str(source))
    _make_room(source, dest, force=force)
    with TranslatedErrors(source, busy_timeout_ms):
        live = open_connection(source, synchronous="NORMAL", busy_timeout_ms=busy_timeout_ms)
        try:
            copy = apsw.Connection(str(dest), flags=_OPEN_FLAGS)
            try:
                with copy.backup("main", live, "main") as copying:
                    copying.step(-1)
                counts = _job_counts(copy)
            finally:
                copy.close()
        finally:
            live.close()
    return Copied(
        path=dest,
        counts=counts,
        size_bytes=dest.stat().st_size,
        seconds=time.monotonic() - started,
    )


def _make_room(source: Path, dest: Path, *, force: bool) -> None:
    """Create ``dest`` empty and private; with ``force``, delete what is there first."""
    if dest.is_dir():
        raise StoreError(
            f"{str(dest)!r} is a folder: give the path of the backup file to create, such as "
            f"{str(dest / (source.name + '.backup'))!r}.",
            path=str(dest),
        )
    if os.path.lexists(dest):
        if real_path(dest) == source:
            raise StoreError(
                f"{str(dest)!r} is the queue file itself: back it up to another file.",
                path=str(dest),
            )
        if not force:
            raise StoreError(
                f"{str(dest)!r} exists; litetasks backup never overwrites a file. Pass --force "
                "to replace it, or choose a new name.",
                path=str(dest),
            )
        for name in (str(dest), *(f"{dest}{suffix}" for suffix in _BESIDE)):
            Path(name).unlink(missing_ok=True)
    create_private_file(dest)


# Jobs of the copy whose unique key is taken by a READY or RUNNING job of the queue file: the
# queue's partial unique index allows one, and the queue's own job does the same work.
_TWIN = """
s.unique_key IS NOT NULL AND s.state IN ('READY', 'RUNNING') AND EXISTS (
    SELECT 1 FROM main.jobs AS m
    WHERE m.unique_key = s.unique_key AND m.state IN ('READY', 'RUNNING')
)"""
_MISSING = "NOT EXISTS (SELECT 1 FROM main.jobs AS m WHERE m.job_id = s.job_id)"

# A later slot of a periodic schedule wins: the copy may hold the job of a slot the queue file
# has not seen, which must not be enqueued again.
_MERGE_SCHEDULES = """
INSERT INTO main.schedules (name, last_slot, last_job_id, updated_at)
SELECT name, last_slot, last_job_id, updated_at FROM saved.schedules WHERE true
ON CONFLICT (name) DO UPDATE SET
    last_slot = excluded.last_slot,
    last_job_id = excluded.last_job_id,
    updated_at = excluded.updated_at
WHERE excluded.last_slot > main.schedules.last_slot
"""


def merge(
    path: Path, saved: Path, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
) -> Merged:
    """Add to the queue file ``path`` every job of the copy ``saved`` that it lacks.

    Jobs are matched by id; a job the queue file has is never changed. Jobs are added as they
    are in the copy: READY ones run, finished ones keep their results, RUNNING ones (their
    worker died before the copy was taken) are recovered as lost by the next recovery. One
    transaction: all or nothing. The copy is brought to this litetasks' schema first.
    """
    saved = real_path(saved)
    if not saved.is_file():
        raise StoreError(f"There is no saved copy at {str(saved)!r}.", path=str(saved))
    if saved == real_path(path):
        raise StoreError(
            f"{str(saved)!r} is the queue file itself: give the saved copy to merge into it.",
            path=str(saved),
        )
    with Store(saved, busy_timeout_ms=busy_timeout_ms):
        pass  # refuses a file that is not a queue, migrates an older copy
    with TranslatedErrors(path, busy_timeout_ms):
        db = open_connection(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        try:
            migrate(db)
            db.execute("ATTACH DATABASE ? AS saved", (str(saved),))
            try:
                merged = _merge_attached(db)
            finally:
                db.execute("DETACH DATABASE saved")
        finally:
            db.close()
    if merged.added:
        Doorbell(path).ring()
    return merged


def _merge_attached(db: apsw.Connection) -> Merged:
    with immediate(db):
        # Column names come from the queue file's own schema, never from a value.
        columns = ", ".join(
            f'"{name}"'
            for (name,) in db.execute(
                "SELECT name FROM pragma_table_info('jobs', 'main') WHERE name != 'seq'"
                " ORDER BY cid"
            )
        )
        saved_jobs = int(db.execute("SELECT count(*) FROM saved.jobs").get)
        twins = [
            str(job_id)
            for (job_id,) in db.execute(
                f"SELECT job_id FROM saved.jobs AS s WHERE {_MISSING} AND {_TWIN} ORDER BY seq"
            )
        ]
        added = {
            str(state): int(count)
            for state, count in db.execute(
                f"SELECT state, count(*) FROM saved.jobs AS s WHERE {_MISSING} AND NOT ({_TWIN})"
                " GROUP BY state"
            )
        }
        db.execute(
            f"INSERT INTO main.jobs ({columns}) SELECT {columns} FROM saved.jobs AS s"
            f" WHERE {_MISSING} AND NOT ({_TWIN}) ORDER BY s.seq"
        )
        db.execute(_MERGE_SCHEDULES)
    return Merged(saved_jobs=saved_jobs, added=added, twins=twins)
