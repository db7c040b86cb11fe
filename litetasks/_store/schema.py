"""The queue file's schema and its forward-only migrations, versioned by ``PRAGMA user_version``.

Times are integer microseconds since the Unix epoch (UTC), so datetimes round-trip exactly.
``due_at`` is ``run_after`` when set, else ``enqueued_at``: the claim orders on it.
"""

from __future__ import annotations

import apsw

from ..exceptions import SchemaVersionError, StoreError
from .connection import immediate

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

_V1 = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE,
    task_path TEXT NOT NULL,
    queue_name TEXT NOT NULL,
    priority INTEGER NOT NULL,
    args TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    state TEXT NOT NULL,
    enqueued_at INTEGER NOT NULL,
    run_after INTEGER,
    due_at INTEGER NOT NULL,
    started_at INTEGER,
    last_attempted_at INTEGER,
    finished_at INTEGER,
    worker_ids TEXT NOT NULL DEFAULT '[]',
    errors TEXT NOT NULL DEFAULT '[]',
    return_value TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    owner TEXT
);
-- The claim reads only this partial index, so finished rows never slow it down. Every index
-- costs a page write per commit on the hot path, so there are as few as the queries need:
-- a worker serving some queues only skips other queues' entries in this same index.
-- run_after is in it so the claim reads no table row: a job without one is always due (its
-- due_at is its enqueue time, which a clock stepped backwards must not push into the future).
CREATE INDEX jobs_ready ON jobs (priority DESC, due_at, seq, run_after) WHERE state = 'READY';
-- Recovery and release look up RUNNING jobs by owner.
CREATE INDEX jobs_running ON jobs (owner) WHERE state = 'RUNNING';

CREATE TABLE workers (
    worker_id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    proc_start INTEGER NOT NULL,
    queues TEXT,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
"""

# Version 2: the features beyond DEP 0014.
_V2 = """
-- A job enqueued with a unique key has no twin READY or RUNNING; NULL keys are never compared,
-- so ordinary jobs cost this index nothing.
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
CREATE UNIQUE INDEX jobs_unique ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('READY', 'RUNNING');
-- Tasks to enqueue when this one finishes: a JSON list of hooks, or NULL.
ALTER TABLE jobs ADD COLUMN hooks TEXT;
-- A RUNNING job asked to stop; its worker interrupts it and records it FAILED.
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
-- The attempts one run of the task may use (max_attempts grows by it on a manual retry).
ALTER TABLE jobs ADD COLUMN budget INTEGER NOT NULL DEFAULT 1;
UPDATE jobs SET budget = max_attempts;

-- The last slot of each periodic schedule that was enqueued: the claim of a slot and its job's
-- insert share one transaction, so each slot is enqueued once however many supervisors run.
CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    last_slot INTEGER NOT NULL,
    last_job_id TEXT,
    updated_at INTEGER NOT NULL
);
"""

# Version 3: the PID namespace a worker's pid belongs to (see liveness.py), NULL in rows written
# before it, whose pids no process judges (their heartbeat does); and tasks a worker did not find
# in its code, put back for another (execution.py).
_V3 = """
ALTER TABLE workers ADD COLUMN pid_namespace TEXT;
-- How many times workers put this job back, not finding its task, and when the first did.
ALTER TABLE jobs ADD COLUMN put_backs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN first_put_back_at INTEGER;
"""

# Version 4: tasks moved to another backend by ``litetasks forward`` (_store/forwarding.py). Their
# state is FORWARDED: set when the forward takes the row (forwarded_at NULL: under way), final
# once the target accepted it (forwarded_at set; forwarded_id is the target's result id).
_V4 = """
ALTER TABLE jobs ADD COLUMN forwarded_to TEXT;
ALTER TABLE jobs ADD COLUMN forwarded_id TEXT;
ALTER TABLE jobs ADD COLUMN forwarded_at INTEGER;
"""

# Pausing (issue 15): a paused queue is claimed by no worker, a paused periodic schedule
# enqueues no slots, until resumed (pausing.py). A row per paused thing: none costs nothing.
_PAUSING = """
CREATE TABLE paused (
    kind TEXT NOT NULL,  -- 'queue' or 'schedule'
    name TEXT NOT NULL,
    paused_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
"""

# Counters of finished tasks (issue 15), written by the transaction that finishes the tasks
# (stats.py): per queue, task path and final state, a bucket of the duration and of the
# queue-wait histograms; and per minute and state, for charts. They start at zero when a file
# is migrated.
_STATS = """
CREATE TABLE finished_stats (
    kind TEXT NOT NULL,  -- 'duration' or 'wait' (a histogram bucket), or 'minute'
    minute INTEGER NOT NULL,  -- 'minute': its start (µs); else 0
    queue_name TEXT NOT NULL,  -- '' for 'minute'
    task_path TEXT NOT NULL,  -- '' for 'minute'
    state TEXT NOT NULL,
    le INTEGER NOT NULL,  -- bucket index (stats.BUCKETS_S); -1: never started; 0 for 'minute'
    tasks INTEGER NOT NULL,
    total_us INTEGER NOT NULL,  -- the sum of the durations or waits counted here
    PRIMARY KEY (kind, minute, queue_name, task_path, state, le)
) WITHOUT ROWID;
"""

# How many executor threads each worker runs, for the console and the metrics (issue 15);
# NULL in rows registered before version 7: unknown.
_THREADS = """
ALTER TABLE workers ADD COLUMN threads INTEGER;
"""

# MIGRATIONS[n] takes a file from version n to n + 1. Append only; never edit a released one.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _PAUSING, _STATS, _THREADS)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(connection: apsw.Connection) -> int:
    """Bring the file up to ``SCHEMA_VERSION``; return the version it had before.

    Each step runs with its version bump in one IMMEDIATE transaction, so concurrent openers
    migrate a file exactly once. A file newer than this code raises ``SchemaVersionError``.
    """
    found = _user_version(connection)
    if found == SCHEMA_VERSION:
        return found
    _refuse_newer(connection, found)
    with immediate(connection):
        current = _user_version(connection)  # another process may have migrated meanwhile
        _refuse_newer(connection, current)
        _refuse_foreign(connection, current)
        for version in range(current, SCHEMA_VERSION):
            connection.execute(MIGRATIONS[version])
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return found


def _user_version(connection: apsw.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").get)


def _refuse_newer(connection: apsw.Connection, found: int) -> None:
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{connection.filename} has schema version {found}; this litetasks supports up to "
            f"{SCHEMA_VERSION}. Upgrade litetasks.",
            path=connection.filename,
            found=found,
            supported=SCHEMA_VERSION,
        )


def _refuse_foreign(connection: apsw.Connection, found: int) -> None:
    # Version 0 with tables is some other database (often the app's own), never a queue file:
    # every migration commits its tables together with its version bump.
    if found == 0 and connection.execute("SELECT count(*) FROM sqlite_schema").get:
        raise StoreError(
            f"{connection.filename} is not a litetasks queue file: it is a SQLite database "
            "that already has tables of its own. Point OPTIONS['path'] at a new file.",
            path=connection.filename,
        )
