"""Put jobs into the queue file: enqueue, unique enqueue, periodic slots, hooks' jobs, withdraw."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from collections.abc import Collection, Sequence
from typing import Any

import apsw

from . import sql
from .clock import EARLIEST_US, LATEST_US, is_time
from .handle import Handle
from .malformed import drop_bad_hooks
from .pausing import SCHEDULE, is_paused
from .records import Hook, JobRecord, JobState, NewJob
from .rows import decode_job, hooks_from_json

__all__ = [
    "enqueue",
    "enqueue_hooks",
    "enqueue_slot",
    "enqueue_unique",
    "insert",
    "new_job_id",
    "new_job_ids",
    "schedules",
    "withdraw",
]

_TWIN = f"SELECT {sql.JOB_COLUMNS} FROM jobs WHERE unique_key = ? AND state IN ('READY', 'RUNNING')"


def new_job_id() -> str:
    """Return a new job (result) id: 32 hex digits, time-ordered so the id index appends.

    12 digits of milliseconds since the epoch, then 20 random ones (80 bits).
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"  # secrets.token_hex(10)


def new_job_ids(count: int) -> list[str]:
    """Return ``count`` new job ids, as ``new_job_id()`` makes them, six times as fast.

    For bulk enqueues: one read of the clock and of the random source for all of them.
    """
    millis = f"{time.time_ns() // 1_000_000:012x}"
    random = secrets.token_hex(10 * count)
    return [millis + random[i : i + 20] for i in range(0, 20 * count, 20)]


def enqueue(handle: Handle, jobs: Sequence[NewJob]) -> int:
    """Insert ``jobs`` READY in one transaction (all or nothing); return ``enqueued_at``."""
    now = handle.now()
    rows = [_insert_params(job, now) for job in jobs]
    if len(rows) == 1:
        # One INSERT is atomic by itself and takes the write lock through the busy handler
        # (it is not a read that upgrades to a write): no BEGIN/COMMIT round trips needed.
        with handle.translated:
            handle.db.execute(sql.INSERT, rows[0])
    else:
        with handle.write() as db:
            db.executemany(sql.INSERT, rows)
    handle.ready()
    return now


def enqueue_unique(handle: Handle, jobs: Sequence[NewJob]) -> tuple[int, list[JobRecord | None]]:
    """Insert ``jobs`` in one transaction, skipping twins of live jobs; return ``enqueued_at``.

    A job whose ``unique_key`` is the key of a READY or RUNNING job (already stored, or
    earlier in ``jobs``) is not inserted; the list says, per job, which live job it
    duplicates (``None``: it was inserted).
    """
    now = handle.now()
    existing: list[JobRecord | None] = []
    with handle.write() as db:
        for job in jobs:
            twin = None
            if job.unique_key is not None:
                twin = db.execute(_TWIN, (job.unique_key,)).fetchone()
            if twin is not None:
                existing.append(decode_job(twin))
                continue
            insert(db, job, now)
            existing.append(None)
    if None in existing:
        handle.ready()
    return now, existing


def enqueue_slot(handle: Handle, name: str, slot_us: int, job: NewJob) -> int | None:
    """Enqueue ``job`` as the slot ``slot_us`` of the periodic schedule ``name``, once; return
    its ``enqueued_at``.

    None (nothing written) when that slot or a later one was already enqueued, by this
    process or any other on the same file; also None, with the slot recorded as done,
    when ``job`` is unique and its twin is READY or RUNNING, or when the schedule is paused
    (the slot is skipped).
    A recorded slot that is not a time a queue file holds (written by other code) is
    replaced.
    """
    if not EARLIEST_US <= slot_us <= LATEST_US:
        raise ValueError(_out_of_range("slot_us", slot_us))
    with handle.write() as db:
        last = db.execute(sql.SCHEDULE_LAST_SLOT, {"name": name}).fetchone()
        if last is not None and is_time(last[0]) and last[0] >= slot_us:
            return None
        now = handle.now()
        job_id: str | None = None
        if not is_paused(db, SCHEDULE, name):  # a paused schedule skips its slots
            try:
                insert(db, job, now)
                job_id = job.job_id
            except apsw.ConstraintError:  # a unique task whose twin is READY or RUNNING
                pass
        db.execute(
            sql.SCHEDULE_SET_SLOT,
            {"name": name, "slot": slot_us, "job_id": job_id, "now": now},
        )
    if job_id is None:
        return None
    handle.ready()
    return now


def schedules(handle: Handle) -> dict[str, tuple[int, str | None]]:
    """Return, per periodic schedule name, its last enqueued slot and that job's id.

    A slot that is not a time a queue file holds (written by other code) is left out, as
    if the schedule had never run: its next slot replaces it.
    """
    with handle.translated:
        rows: list[Any] = handle.db.execute(
            "SELECT name, last_slot, last_job_id FROM schedules"
        ).fetchall()
    return {
        str(name): (slot, None if job_id is None else str(job_id))
        for name, slot, job_id in rows
        if is_time(slot)
    }


def withdraw(handle: Handle, job_ids: Collection[str]) -> list[str]:
    """Delete the jobs ``job_ids`` that are still READY; return the ids deleted.

    For a producer that finds it wrote into a file that was moved or deleted meanwhile:
    a job a worker has taken already stays (it is in the file the pool served).
    """
    with handle.write() as db:
        rows = db.execute(
            "DELETE FROM jobs WHERE state = 'READY'"
            " AND job_id IN (SELECT value FROM json_each(?)) RETURNING job_id",
            (json.dumps(list(job_ids)),),
        ).fetchall()
    return [str(row[0]) for row in rows]


def insert(db: apsw.Connection, job: NewJob, now: int) -> None:
    """Insert ``job`` READY, enqueued at ``now``, in the caller's transaction."""
    db.execute(sql.INSERT, _insert_params(job, now))


def enqueue_hooks(
    handle: Handle, db: apsw.Connection, job_id: str, state: JobState, raw: Any
) -> None:
    """Insert the hooks' jobs of ``job_id`` that fire on ``state``, in the caller's transaction.

    ``raw`` is the row's ``hooks`` value, or the hooks already decoded (a tuple). Sets
    ``handle.hooked`` when it inserts one.
    """
    if not state.is_finished:
        return
    hooks = raw if isinstance(raw, tuple) else hooks_from_json(raw)
    if hooks is None:  # written by other code: none is enqueued, and the row says so
        drop_bad_hooks(db, job_id, raw)
        return
    now = handle.now()
    for hook in hooks:
        if hook.fires_on(state):
            insert(db, _hook_job(hook, job_id), now)
            handle.hooked = True


def _hook_job(hook: Hook, job_id: str) -> NewJob:
    """The job ``hook`` enqueues for the finished job ``job_id``: its one argument."""
    return NewJob(
        job_id=new_job_id(),
        task_path=hook.task_path,
        queue_name=hook.queue_name,
        priority=hook.priority,
        args_json=json.dumps([job_id]),
        max_attempts=hook.max_attempts,
    )


def _insert_params(job: NewJob, now: int) -> tuple[Any, ...]:
    """The bindings of ``sql.INSERT`` for ``job``, enqueued at ``now``."""
    run_after = job.run_after_us
    if run_after is not None and not EARLIEST_US <= run_after <= LATEST_US:
        raise ValueError(_out_of_range("run_after_us", run_after))
    return (
        job.job_id,
        job.task_path,
        job.queue_name,
        job.priority,
        job.args_json,
        job.kwargs_json,
        job.run_after_us,
        job.max_attempts,
        job.unique_key,
        _hooks_json(job.hooks),
        now,
    )


def _out_of_range(name: str, value: int) -> str:
    return (
        f"{name} is {value!r}, outside the times a queue file holds ({EARLIEST_US} to "
        f"{LATEST_US} microseconds since the epoch: 0001-01-02 to 9999-12-30 UTC); nothing "
        "was written. Pass a time in that range."
    )


def _hooks_json(hooks: Sequence[Hook]) -> str | None:
    return json.dumps([dataclasses.asdict(h) for h in hooks]) if hooks else None
