"""Move READY jobs to another backend (``litetasks forward``): take, then mark each forwarded.

A forward takes a batch of READY jobs in one transaction: their state becomes FORWARDED with
``forwarded_at`` NULL (under way), so no worker claims them while they are enqueued on the
target, and each gets the id the target will use when the caller can choose it. Each job the
target accepted is then marked (``forwarded_id``, ``forwarded_at``) in its own transaction; a
job it refused goes back to READY as it was. A forward killed in between leaves jobs under way:
the next forward takes them first (``pending``), and finds them on the target by their chosen id.
A row holding values litetasks cannot read (written by other code) is never taken: the forward
leaves it as it is, READY or under way, and says why (``unreadable``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import sql, transfer
from .clock import is_time
from .handle import Handle
from .records import JobRecord
from .rows import bad_value, decode_job
from .transfer import Export
from .unreadable import Unreadable, read_rows, reason, unreadable

__all__ = [
    "Batch",
    "Forwarded",
    "Forwarding",
    "Taken",
    "count_ready",
    "forwarded",
    "give_back",
    "mark",
    "ready",
    "take",
]

# Every statement that reads rows to move comes twice (``_both``): as is, and with every text as
# a blob, for rows holding text that is not UTF-8 (``unreadable.read_rows``). The rows end in
# ``forwarded_id`` and ``seq``.
_PENDING = """
SELECT {columns} FROM jobs
WHERE state = 'FORWARDED' AND forwarded_at IS NULL AND forwarded_to = :target
  AND seq NOT IN (SELECT value FROM json_each(:skip))
ORDER BY seq
LIMIT :limit
"""
_CANDIDATES = """
SELECT {columns} FROM jobs
WHERE state = 'READY'
  AND (:queues IS NULL OR queue_name IN (SELECT value FROM json_each(:queues)))
  AND (:tasks IS NULL OR task_path IN (SELECT value FROM json_each(:tasks)))
  AND seq NOT IN (SELECT value FROM json_each(:skip))
ORDER BY seq
LIMIT :limit
"""
_READY = """
SELECT {columns} FROM jobs
WHERE state = 'READY'
  AND (:queues IS NULL OR queue_name IN (SELECT value FROM json_each(:queues)))
  AND (:tasks IS NULL OR task_path IN (SELECT value FROM json_each(:tasks)))
ORDER BY seq
"""
_COUNT_READY = """
SELECT count(*) FROM jobs
WHERE state = 'READY'
  AND (:queues IS NULL OR queue_name IN (SELECT value FROM json_each(:queues)))
  AND (:tasks IS NULL OR task_path IN (SELECT value FROM json_each(:tasks)))
"""
_TAKE = """
UPDATE jobs SET state = 'FORWARDED', forwarded_to = :target, forwarded_id = :forwarded_id
WHERE seq = :seq AND state = 'READY'
"""
_MARK = """
UPDATE jobs SET forwarded_id = :forwarded_id, forwarded_at = :now
WHERE job_id = :job_id AND state = 'FORWARDED' AND forwarded_at IS NULL
"""
_GIVE_BACK = """
UPDATE jobs SET state = 'READY', forwarded_to = NULL, forwarded_id = NULL
WHERE job_id = :job_id AND state = 'FORWARDED' AND forwarded_at IS NULL
"""
_COLUMN_NAMES = (*sql.JOB_COLUMN_NAMES, "forwarded_id")
_FORWARDED_ID, _SEQ = len(_COLUMN_NAMES) - 1, len(_COLUMN_NAMES)
_TASK_PATH = sql.JOB_COLUMN_NAMES.index("task_path")


def _both(statement: str) -> tuple[str, str]:
    return (
        statement.format(columns=", ".join(_COLUMN_NAMES) + ", seq"),
        statement.format(columns=sql.as_blobs(_COLUMN_NAMES) + ", seq"),
    )


_PENDING_ROWS, _CANDIDATE_ROWS, _READY_ROWS = _both(_PENDING), _both(_CANDIDATES), _both(_READY)
_FORWARDED = """
SELECT forwarded_to, forwarded_id, forwarded_at FROM jobs
WHERE job_id = :job_id AND state = 'FORWARDED'
"""
_FORWARDED_RAW = (
    "SELECT "
    + sql.as_blobs(("forwarded_to", "forwarded_id"))
    + ", forwarded_at FROM jobs WHERE job_id = :job_id AND state = 'FORWARDED'"
)


@dataclass(frozen=True, slots=True)
class Taken:
    """A job a forward took: the row, and the target id chosen for it (None: the target's)."""

    job: JobRecord  # as it was read, before the forward took it
    chosen_id: str | None
    resumed: bool  # taken by an earlier forward that stopped before marking it
    seq: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What one ``take`` took, and the rows it left as they are: they cannot be read."""

    taken: list[Taken]
    unreadable: list[Unreadable]


@dataclass(frozen=True, slots=True)
class Forwarded:
    """Where a FORWARDED job went; ``forwarded_at_us`` None while it is under way."""

    target: str
    target_id: str | None
    forwarded_at_us: int | None


def take(
    handle: Handle,
    target: str,
    *,
    limit: int,
    queues: Collection[str] | None,
    tasks: Collection[str] | None,
    new_id: Callable[[], str | None],
    skip: Collection[int] = (),
) -> Batch:
    """Take up to ``limit`` jobs to forward to ``target``: first those an earlier forward left
    under way, then READY jobs (of ``queues`` and ``tasks``, if given) in enqueue order; rows
    whose seq is in ``skip`` (refused already) are left out.

    A row that cannot be read (``unreadable``) is not taken, and nothing is written to it: it
    comes back in ``Batch.unreadable`` (and counts towards ``limit``).
    """
    batch = Batch([], [])
    with handle.write() as db:
        params = {"target": target, "limit": limit, "skip": json.dumps(sorted(skip))}
        pending = read_rows(db, *_PENDING_ROWS, params)
        for job, row, refused in _read(pending, pending=True):
            if refused is not None:
                batch.unreadable.append(refused)
            else:
                batch.taken.append(Taken(job, row[_FORWARDED_ID], True, row[_SEQ]))
        params |= {**_filters(queues, tasks), "limit": limit - len(pending)}
        for job, row, refused in _read(read_rows(db, *_CANDIDATE_ROWS, params), pending=False):
            if refused is not None:
                batch.unreadable.append(refused)
                continue
            chosen = new_id()
            db.execute(_TAKE, {"target": target, "forwarded_id": chosen, "seq": row[_SEQ]})
            batch.taken.append(Taken(job, chosen, False, row[_SEQ]))
    return batch


def _read(
    rows: list[Sequence[Any]], *, pending: bool
) -> Iterator[tuple[JobRecord, Sequence[Any], Unreadable | None]]:
    """Each row's job, the row, and the row as ``unreadable`` (None if it reads cleanly); a
    ``forwarded_id`` is read only under way (a READY row's is written over)."""
    for row in rows:
        job = decode_job(row[: len(sql.JOB_COLUMN_NAMES)])
        chosen = row[_FORWARDED_ID]
        extra = []
        if pending and chosen is not None and type(chosen) is not str:
            extra.append(bad_value("forwarded_id", chosen, "text or NULL"))
        yield job, row, unreadable(job, row[_SEQ], row[_TASK_PATH], extra)


def _filters(queues: Collection[str] | None, tasks: Collection[str] | None) -> dict[str, Any]:
    return {
        "queues": None if queues is None else json.dumps(sorted(queues)),
        "tasks": None if tasks is None else json.dumps(sorted(tasks)),
    }


def ready(
    handle: Handle, queues: Collection[str] | None, tasks: Collection[str] | None
) -> tuple[list[JobRecord], list[Unreadable]]:
    """The READY jobs a forward would take (of ``queues`` and ``tasks``, if given), and the
    rows it would leave as they are (``unreadable``)."""
    with handle.translated:
        rows = read_rows(handle.db, *_READY_ROWS, _filters(queues, tasks))
    jobs, refused = [], []
    for job, _, left in _read(rows, pending=False):
        if left is None:
            jobs.append(job)
        else:
            refused.append(left)
    return jobs, refused


def count_ready(
    handle: Handle, queues: Collection[str] | None, tasks: Collection[str] | None
) -> int:
    """How many READY jobs a forward would take (of ``queues`` and ``tasks``, if given)."""
    with handle.translated:
        return int(handle.db.execute(_COUNT_READY, _filters(queues, tasks)).get)


def mark(handle: Handle, job_id: str, target_id: str) -> bool:
    """Record that the target accepted ``job_id`` as ``target_id``: its forward is final."""
    with handle.write() as db:
        db.execute(_MARK, {"job_id": job_id, "forwarded_id": target_id, "now": handle.now()})
        return bool(db.changes())


def give_back(handle: Handle, job_id: str) -> bool:
    """Make a job the target refused READY again, as it was before the forward took it."""
    with handle.write() as db:
        db.execute(_GIVE_BACK, {"job_id": job_id})
        changed = bool(db.changes())
    if changed:
        handle.ready()
    return changed


def forwarded(handle: Handle, job_id: str) -> Forwarded | None:
    """Where ``job_id`` was forwarded to (None: it was not).

    Raises ``ValueError`` naming the column when the row holds what litetasks did not write
    there (text that is not UTF-8, a blob, a time that is not one).
    """
    with handle.translated:
        rows = read_rows(handle.db, _FORWARDED, _FORWARDED_RAW, {"job_id": job_id})
    if not rows or rows[0][0] is None:
        return None
    target, target_id, at = rows[0]
    problems = [
        bad_value(column, value, "text")
        for column, value in (("forwarded_to", target), ("forwarded_id", target_id))
        if value is not None and type(value) is not str
    ]
    if at is not None and not is_time(at):
        problems.append(bad_value("forwarded_at", at, "a time"))
    if problems:
        raise ValueError(reason(problems))
    return Forwarded(target, target_id, at)


class Forwarding:
    """The forward's operations on one queue file (``Store.forwarding``)."""

    def __init__(self, handle: Handle) -> None:
        self._handle = handle

    def take(
        self,
        target: str,
        *,
        limit: int,
        queues: Collection[str] | None = None,
        tasks: Collection[str] | None = None,
        new_id: Callable[[], str | None] = lambda: None,
        skip: Collection[int] = (),
    ) -> Batch:
        """See ``take``."""
        return take(
            self._handle,
            target,
            limit=limit,
            queues=queues,
            tasks=tasks,
            new_id=new_id,
            skip=skip,
        )

    def ready(
        self, *, queues: Collection[str] | None = None, tasks: Collection[str] | None = None
    ) -> tuple[list[JobRecord], list[Unreadable]]:
        """See ``ready``."""
        return ready(self._handle, queues, tasks)

    def count_ready(
        self, *, queues: Collection[str] | None = None, tasks: Collection[str] | None = None
    ) -> int:
        """See ``count_ready``."""
        return count_ready(self._handle, queues, tasks)

    def mark(self, job_id: str, target_id: str) -> bool:
        """See ``mark``."""
        return mark(self._handle, job_id, target_id)

    def give_back(self, job_id: str) -> bool:
        """See ``give_back``."""
        return give_back(self._handle, job_id)

    def forwarded(self, job_id: str) -> Forwarded | None:
        """See ``forwarded``."""
        return forwarded(self._handle, job_id)

    def export(
        self, *, queues: Collection[str] | None = None, tasks: Collection[str] | None = None
    ) -> Export:
        """See ``transfer.export``."""
        return transfer.export(self._handle, queues, tasks)

    def import_lines(self, lines: Iterable[str | bytes], source: str) -> tuple[int, int]:
        """See ``transfer.import_lines``."""
        return transfer.import_lines(self._handle, lines, source)
