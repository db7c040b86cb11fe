"""Move READY jobs to another backend (``litetasks forward``): take, then mark each forwarded.

A forward takes a batch of READY jobs in one transaction: their state becomes FORWARDED with
``forwarded_at`` NULL (under way), so no worker claims them while they are enqueued on the
target, and each gets the id the target will use when the caller can choose it. Each job the
target accepted is then marked (``forwarded_id``, ``forwarded_at``) in its own transaction; a
job it refused goes back to READY as it was. A forward killed in between leaves jobs under way:
the next forward takes them first (``pending``), and finds them on the target by their chosen id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import sql, transfer
from .handle import Handle
from .records import JobRecord
from .rows import decode_job, decode_rows

__all__ = [
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

_PENDING = f"""
SELECT {sql.JOB_COLUMNS}, forwarded_id FROM jobs
WHERE state = 'FORWARDED' AND forwarded_at IS NULL AND forwarded_to = :target
ORDER BY seq
LIMIT :limit
"""
_CANDIDATES = """
SELECT job_id FROM jobs
WHERE state = 'READY'
  AND (:queues IS NULL OR queue_name IN (SELECT value FROM json_each(:queues)))
  AND (:tasks IS NULL OR task_path IN (SELECT value FROM json_each(:tasks)))
  AND job_id NOT IN (SELECT value FROM json_each(:skip))
ORDER BY seq
LIMIT :limit
"""
_READY = f"""
SELECT {sql.JOB_COLUMNS} FROM jobs
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
_TAKE = f"""
UPDATE jobs SET state = 'FORWARDED', forwarded_to = :target, forwarded_id = :forwarded_id
WHERE job_id = :job_id AND state = 'READY'
RETURNING {sql.JOB_COLUMNS}, forwarded_id
"""
_MARK = """
UPDATE jobs SET forwarded_id = :forwarded_id, forwarded_at = :now
WHERE job_id = :job_id AND state = 'FORWARDED' AND forwarded_at IS NULL
"""
_GIVE_BACK = """
UPDATE jobs SET state = 'READY', forwarded_to = NULL, forwarded_id = NULL
WHERE job_id = :job_id AND state = 'FORWARDED' AND forwarded_at IS NULL
"""
_FORWARDED = """
SELECT forwarded_to, forwarded_id, forwarded_at FROM jobs
WHERE job_id = ? AND state = 'FORWARDED'
"""


@dataclass(frozen=True, slots=True)
class Taken:
    """A job a forward took: the row, and the target id chosen for it (None: the target's)."""

    job: JobRecord
    chosen_id: str | None
    resumed: bool  # taken by an earlier forward that stopped before marking it


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
    skip: Collection[str] = (),
) -> list[Taken]:
    """Take up to ``limit`` jobs to forward to ``target``: first those an earlier forward left
    under way, then READY jobs (of ``queues`` and ``tasks``, if given, not in ``skip``: the
    target refused them) in enqueue order."""
    with handle.write() as db:
        pending = [
            Taken(decode_job(row[:-1]), row[-1], True)
            for row in decode_rows(
                db.execute(_PENDING, {"target": target, "limit": limit}).fetchall()
            )
        ]
        params = {
            **_filters(queues, tasks),
            "limit": limit - len(pending),
            "skip": json.dumps(sorted(skip)),
        }
        ids = [str(job_id) for (job_id,) in db.execute(_CANDIDATES, params).fetchall()]
        taken = []
        for job_id in ids:
            row = db.execute(
                _TAKE, {"target": target, "forwarded_id": new_id(), "job_id": job_id}
            ).fetchone()
            if row is not None:
                [row] = decode_rows([row])
                taken.append(Taken(decode_job(row[:-1]), row[-1], False))
    return pending + taken


def _filters(queues: Collection[str] | None, tasks: Collection[str] | None) -> dict[str, Any]:
    return {
        "queues": None if queues is None else json.dumps(sorted(queues)),
        "tasks": None if tasks is None else json.dumps(sorted(tasks)),
    }


def ready(
    handle: Handle, queues: Collection[str] | None, tasks: Collection[str] | None
) -> list[JobRecord]:
    """The READY jobs a forward would take (of ``queues`` and ``tasks``, if given)."""
    with handle.translated:
        rows = handle.db.execute(_READY, _filters(queues, tasks)).fetchall()
    return [decode_job(row) for row in decode_rows(rows)]


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
    """Where ``job_id`` was forwarded to (None: it was not)."""
    with handle.translated:
        row = handle.db.execute(_FORWARDED, (job_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    return Forwarded(str(row[0]), None if row[1] is None else str(row[1]), row[2])


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
        skip: Collection[str] = (),
    ) -> list[Taken]:
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
    ) -> list[JobRecord]:
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

    def export_lines(
        self, *, queues: Collection[str] | None = None, tasks: Collection[str] | None = None
    ) -> Iterator[str]:
        """See ``transfer.export_lines``."""
        return transfer.export_lines(self._handle, queues, tasks)

    def import_lines(self, lines: Iterable[str], source: str) -> tuple[int, int]:
        """See ``transfer.import_lines``."""
        return transfer.import_lines(self._handle, lines, source)
