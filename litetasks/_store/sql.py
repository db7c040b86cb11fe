"""The SQL of the store: every statement the queue runs, with named parameters.

Values always travel as bindings; the only formatting here fills in which index and which
queue filter a claim uses, from constants.
"""

from __future__ import annotations

import json

from .clock import EARLIEST_US, LATEST_US

__all__ = [
    "CLAIMED_COLUMNS",
    "CLAIMED_COLUMN_NAMES",
    "CLAIMED_DUE_AT",
    "CLAIMED_SEQ",
    "CLAIMS",
    "CLAIM_ANY",
    "CLAIM_ONE_QUEUE",
    "CLAIM_QUEUES",
    "DUE_ANY",
    "DUE_ONE_QUEUE",
    "DUE_QUEUES",
    "ERRORS_OK",
    "FORGET_LOST_WORKERS",
    "INSERT",
    "JOB_COLUMNS",
    "JOB_COLUMN_NAMES",
    "JOB_ROW_RAW",
    "PICK_ANY",
    "PICK_ONE_QUEUE",
    "PICK_QUEUES",
    "PUT_BACK",
    "RECORD_FAILURE",
    "RECORD_SUCCESS",
    "RECORD_SUCCESSES",
    "RECOVER",
    "RELEASE",
    "RUNNING_JOBS",
    "TAKE",
    "TAKEN",
    "TAKEN_ROWS",
    "TAKEN_ROWS_RAW",
    "append_error",
    "as_blobs",
    "is_json_array",
]

# The columns of a job row that litetasks reads, in the order every SELECT of them returns them
# (``rows.decode_job`` reads them by these positions). The table has more, which only the
# SQL uses: ``seq`` (the rowid, the enqueue order), ``due_at``, ``budget`` and ``forwarded_*``.
JOB_COLUMN_NAMES: tuple[str, ...] = (
    "job_id",
    "task_path",
    "queue_name",
    "priority",
    "args",
    "kwargs",
    "state",
    "enqueued_at",
    "run_after",
    "started_at",
    "last_attempted_at",
    "finished_at",
    "worker_ids",
    "errors",
    "return_value",
    "attempts",
    "max_attempts",
    "owner",
    "unique_key",
    "cancel_requested",
    "hooks",
    "put_backs",
    "first_put_back_at",
)
JOB_COLUMNS = ", ".join(JOB_COLUMN_NAMES)
# A claim returns ``due_at`` and ``seq`` after them, for its sort: RETURNING order is unspecified.
CLAIMED_COLUMN_NAMES = (*JOB_COLUMN_NAMES, "due_at", "seq")
CLAIMED_COLUMNS = ", ".join(CLAIMED_COLUMN_NAMES)
CLAIMED_DUE_AT = CLAIMED_COLUMN_NAMES.index("due_at")
CLAIMED_SEQ = CLAIMED_COLUMN_NAMES.index("seq")

# Bound by position, (job_id, task_path, queue_name, priority, args, kwargs, run_after,
# max_attempts, unique_key, hooks, now): a tuple binds faster than a dict (by name), which
# shows in a bulk enqueue of many rows.
INSERT = """
INSERT INTO jobs (job_id, task_path, queue_name, priority, args, kwargs, state, enqueued_at,
                  run_after, due_at, max_attempts, budget, unique_key, hooks)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'READY', ?11, ?7, coalesce(?7, ?11), ?8, ?8, ?9, ?10)
"""


def is_json_array(column: str) -> str:
    """SQL that is true when ``column`` holds a JSON array as text.

    A row written behind litetasks' back can hold anything. SQLite's JSON functions raise an
    error on malformed JSON, which would abort the whole transaction (every other job claimed
    or recorded in it too), and ``json_valid()`` alone lets some blobs through; CASE evaluates
    lazily, so ``json_type()`` only ever sees valid JSON.
    """
    return (
        f"(CASE WHEN typeof({column}) = 'text' AND json_valid({column})"
        f" THEN json_type({column}) = 'array' ELSE 0 END)"
    )


def _is_json(column: str) -> str:
    """SQL that is true when ``column`` holds valid JSON text, so that ``json_insert()`` and
    ``json_remove()`` on it cannot fail (on valid JSON that is not an array they change
    nothing)."""
    return f"(typeof({column}) = 'text' AND json_valid({column}))"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# The error that takes the place of an ``errors`` value that is not a JSON list, when an attempt
# adds its own error: the row stays readable and says what happened.
_BAD_ERRORS = _literal(
    json.dumps(
        {
            "exception_class_path": "litetasks.exceptions.MalformedJob",
            "traceback": "litetasks.exceptions.MalformedJob: column 'errors' of this task's row "
            "held a value that is not a JSON list of errors (it was written by something other "
            "than litetasks); this list replaced it.\n",
        }
    )
)


# True when ``errors`` is a JSON list of errors as litetasks writes them (what rows.py reads):
# each an object of exactly two text members, exception_class_path and traceback.
ERRORS_OK = """(CASE WHEN typeof(errors) = 'text' AND json_valid(errors) THEN
    CASE WHEN json_type(errors) = 'array' THEN NOT EXISTS (
        SELECT 1 FROM json_each(errors) AS error
        WHERE error.type IS NOT 'object'
           OR json_type(error.value, '$.exception_class_path') IS NOT 'text'
           OR json_type(error.value, '$.traceback') IS NOT 'text'
           OR (SELECT count(*) FROM json_each(error.value)) <> 2
    ) ELSE 0 END
ELSE 0 END)"""


def append_error(error: str) -> str:
    """SQL for ``errors`` with ``error`` (an SQL expression of JSON text) appended; an
    ``errors`` that is not a list of errors is replaced, by a note saying so and ``error``."""
    return (
        f"CASE WHEN {ERRORS_OK} THEN json_insert(errors, '$[#]', json({error}))"
        f" ELSE json_array(json({_BAD_ERRORS}), json({error})) END"
    )


# The jobs a claim takes, best first. The three claim statements differ only in how they pick
# the queue (and so the index). A due time that is not a time litetasks stores (text, or past
# its last year: a row written by other code) counts as due, so that a worker fails the job
# (see rows.py) instead of it waiting for ever. ``+:limit``, not ``:limit``: SQLite (3.54,
# STAT4) plans a bare ``LIMIT :limit`` for its bound value, so every new binding expired the
# prepared statement and each claim compiled it again (70,000 instructions, a fifth of a
# claim); the unary plus keeps the value out of the plan, which is the same (INDEXED BY).
DUE = (
    """
    SELECT seq FROM jobs INDEXED BY {index}
    WHERE state = 'READY'
      AND (run_after IS NULL OR due_at <= :now OR due_at > """
    + str(LATEST_US)
    + """) {queue_filter}
    ORDER BY priority DESC, due_at, seq
    LIMIT +:limit
"""
)
# What claiming does to a row, for CLAIM and TAKE. A worker_ids that is not a JSON list is
# left as it is (as is valid JSON that is not a list): the claim then fails the job (rows.py).
_CLAIMED = f"""
UPDATE jobs
SET state = 'RUNNING',
    owner = :worker_id,
    attempts = attempts + 1,
    started_at = coalesce(started_at, :now),
    last_attempted_at = :now,
    worker_ids = CASE WHEN {_is_json("worker_ids")}
                      THEN json_insert(worker_ids, '$[#]', :worker_id) ELSE worker_ids END
"""
CLAIM = _CLAIMED + "WHERE seq IN (" + DUE + ")\nRETURNING {columns}\n"
_ONE_QUEUE = "AND queue_name = :queue"
_QUEUES = "AND queue_name IN (SELECT value FROM json_each(:queues))"
# Every queue but the paused ones (pausing.py); a claim with nothing paused does not use it.
_NOT_PAUSED = "AND queue_name NOT IN (SELECT value FROM json_each(:paused))"
CLAIM_ANY = CLAIM.format(index="jobs_ready", queue_filter="", columns=CLAIMED_COLUMNS)
CLAIM_ONE_QUEUE = CLAIM.format(index="jobs_ready", queue_filter=_ONE_QUEUE, columns=CLAIMED_COLUMNS)
CLAIM_QUEUES = CLAIM.format(index="jobs_ready", queue_filter=_QUEUES, columns=CLAIMED_COLUMNS)
# What the claim statement of the same name takes first, without taking it.
DUE_ANY = DUE.format(index="jobs_ready", queue_filter="")
DUE_ONE_QUEUE = DUE.format(index="jobs_ready", queue_filter=_ONE_QUEUE)
DUE_QUEUES = DUE.format(index="jobs_ready", queue_filter=_QUEUES)
# A worker leaves the tasks it did not find in its code to other workers for a while
# (execution.py): claims skip them, reading each candidate's row (only then).
_SKIP = "AND task_path NOT IN (SELECT value FROM json_each(:skip))"

# The batch claim in three statements, each stepped once, that hand whole batches across as
# JSON text: the seqs of the jobs to take (best first), their UPDATE, and the claimed rows.
# apsw releases the GIL around every step of a statement, and the writing thread then waits
# for it again (up to the interpreter's switch interval, 5 ms) while other threads run tasks;
# stepping once per row made a claim of 64 jobs take 50 ms there, not 1.
# PICK's ORDER BY is the claim order, formally (an aggregate's order is otherwise arbitrary):
# the claim fails bad rows, and enqueues their hooks, in it (claiming.py). The keys come from
# the jobs_ready index, as DUE's do.
PICK = (
    "SELECT json_group_array(seq ORDER BY priority DESC, due_at, seq) FROM ("
    + DUE.replace("SELECT seq FROM", "SELECT seq, priority, due_at FROM", 1)
    + ")"
)
PICK_ANY = PICK.format(index="jobs_ready", queue_filter="")
PICK_ONE_QUEUE = PICK.format(index="jobs_ready", queue_filter=_ONE_QUEUE)
PICK_QUEUES = PICK.format(index="jobs_ready", queue_filter=_QUEUES)


def _claim_statements(queue_filter: str) -> tuple[str, str, str]:
    return (
        PICK.format(index="jobs_ready", queue_filter=queue_filter),
        CLAIM.format(index="jobs_ready", queue_filter=queue_filter, columns=CLAIMED_COLUMNS),
        DUE.format(index="jobs_ready", queue_filter=queue_filter),
    )


# The (PICK, CLAIM, DUE) statements of a claim, by which queues it serves ("any", "one",
# "some", or "unpaused": every queue but :paused) and whether it skips task paths (:skip).
CLAIMS: dict[tuple[str, bool], tuple[str, str, str]] = {
    (queues, skips): _claim_statements(f"{queue_filter} {_SKIP}" if skips else queue_filter)
    for queues, queue_filter in (
        ("any", ""),
        ("one", _ONE_QUEUE),
        ("some", _QUEUES),
        ("unpaused", _NOT_PAUSED),
    )
    for skips in (False, True)
}
TAKE = _CLAIMED + "WHERE seq IN (SELECT value FROM json_each(:seqs)) AND state = 'READY'\n"
# A blob (only a row written by other code holds one) makes json_array() fail, and the rows
# then come one by one, below; but a blob that happens to be valid JSONB is read as the value it
# encodes (x'00' as null). Checking every column's type here would double this statement's
# cost, for every claim: such a blob is read as a value of the right type or fails the job, and
# every other path (recording, get) still sees the blob itself.
TAKEN = (
    "SELECT json_group_array(json_array("
    + CLAIMED_COLUMNS
    + ")) FROM jobs WHERE seq IN (SELECT value FROM json_each(:seqs))"
)
# The same rows one by one, when they cannot travel as one JSON text (too long, or a value
# JSON cannot hold, as in a row written by other code).
TAKEN_ROWS = (
    "SELECT " + CLAIMED_COLUMNS + " FROM jobs WHERE seq IN (SELECT value FROM json_each(:seqs))"
)


# The same again with every text as a blob, when some text is not UTF-8 (Python cannot read it).
# A first byte tells what each blob was (rows.decode_rows): x'01' text, x'02' a blob, so that a
# blob another program wrote is never read as text.
def as_blobs(columns: tuple[str, ...]) -> str:
    """The select list of ``columns``, each text or blob as a marked blob (see above)."""
    return ", ".join(
        f"CASE typeof({c}) WHEN 'text' THEN CAST(x'01' || {c} AS BLOB)"
        f" WHEN 'blob' THEN CAST(x'02' || {c} AS BLOB) ELSE {c} END"
        for c in columns
    )


TAKEN_ROWS_RAW = (
    "SELECT "
    + as_blobs(CLAIMED_COLUMN_NAMES)
    + " FROM jobs WHERE seq IN (SELECT value FROM json_each(:seqs))"
)
JOB_ROW_RAW = "SELECT " + as_blobs(JOB_COLUMN_NAMES) + " FROM jobs WHERE job_id = ?"

# Text a worker reads back from a row comes as a blob (``CAST(... AS BLOB)``, with ``typeof``
# where it matters): apsw raises on text that is not UTF-8 (a row written by other code), which
# would abort the whole transaction and every outcome in it; rows.returned_text() and
# rows.returned_hooks() decode it.

# Recording is fenced on (owner, attempts): a worker whose job was recovered meanwhile matches
# no row, so an attempt is recorded exactly once.
RECORD_SUCCESS = """
UPDATE jobs
SET state = 'SUCCESSFUL',
    owner = NULL,
    return_value = :return_value,
    finished_at = :finished_at,
    started_at = CASE WHEN attempts = 1 THEN :started_at ELSE started_at END,
    last_attempted_at = :started_at
WHERE job_id = :job_id AND state = 'RUNNING' AND owner = :worker_id AND attempts = :attempt
RETURNING state, typeof(hooks), CAST(hooks AS BLOB)
"""

# RECORD_SUCCESS for many outcomes at once, in one step (see PICK). :batch is a JSON array of
# [job_id, worker_id, attempt, started_at, finished_at, return_value_json_text].
RECORD_SUCCESSES = """
WITH o AS (
    SELECT value ->> 0 AS job_id, value ->> 1 AS worker_id, value ->> 2 AS attempt,
           value ->> 3 AS started_at, value ->> 4 AS finished_at, value ->> 5 AS return_value
    FROM json_each(:batch)
)
UPDATE jobs
SET state = 'SUCCESSFUL',
    owner = NULL,
    return_value = o.return_value,
    finished_at = o.finished_at,
    started_at = CASE WHEN attempts = 1 THEN o.started_at ELSE jobs.started_at END,
    last_attempted_at = o.started_at
FROM o
WHERE jobs.job_id = o.job_id AND jobs.state = 'RUNNING' AND jobs.owner = o.worker_id
  AND jobs.attempts = o.attempt
"""

# A failed attempt is retried when the worker asks (retry_at), attempts remain and nobody
# cancelled the job.
_RETRY = "(:retry_at IS NOT NULL AND attempts < max_attempts AND NOT cancel_requested)"
RECORD_FAILURE = f"""
UPDATE jobs
SET state = CASE WHEN {_RETRY} THEN 'READY' ELSE 'FAILED' END,
    finished_at = CASE WHEN {_RETRY} THEN NULL ELSE :finished_at END,
    due_at = CASE WHEN {_RETRY} THEN :retry_at ELSE due_at END,
    run_after = CASE WHEN {_RETRY} THEN :retry_at ELSE run_after END,
    owner = NULL,
    errors = {append_error(":error")},
    started_at = CASE WHEN attempts = 1 THEN :started_at ELSE started_at END,
    last_attempted_at = :started_at
WHERE job_id = :job_id AND state = 'RUNNING' AND owner = :worker_id AND attempts = :attempt
RETURNING state, typeof(hooks), CAST(hooks AS BLOB)
"""

# An interrupted attempt (graceful shutdown) does not count: it is taken back off the record.
RELEASE = f"""
UPDATE jobs
SET state = 'READY',
    owner = NULL,
    attempts = attempts - 1,
    worker_ids = CASE WHEN {_is_json("worker_ids")}
                      THEN json_remove(worker_ids, '$[#-1]') ELSE worker_ids END,
    started_at = CASE WHEN attempts = 1 THEN NULL ELSE started_at END,
    last_attempted_at = CASE WHEN attempts = 1 THEN NULL ELSE last_attempted_at END
WHERE state = 'RUNNING' AND owner = :worker_id
  AND (:job_ids IS NULL OR job_id IN (SELECT value FROM json_each(:job_ids)))
RETURNING CAST(job_id AS BLOB)
"""

# A worker did not find the job's task in its code: READY again at :due_at for another worker
# (or a restarted pool), the attempt not counted (as RELEASE), the put-back counted.
PUT_BACK = f"""
UPDATE jobs
SET state = 'READY',
    owner = NULL,
    attempts = attempts - 1,
    worker_ids = CASE WHEN {_is_json("worker_ids")}
                      THEN json_remove(worker_ids, '$[#-1]') ELSE worker_ids END,
    started_at = CASE WHEN attempts = 1 THEN NULL ELSE started_at END,
    last_attempted_at = CASE WHEN attempts = 1 THEN NULL ELSE last_attempted_at END,
    run_after = :due_at,
    due_at = :due_at,
    put_backs = put_backs + 1,
    first_put_back_at = coalesce(first_put_back_at, :finished_at)
WHERE job_id = :job_id AND state = 'RUNNING' AND owner = :worker_id AND attempts = :attempt
RETURNING state
"""

# Every RUNNING job and its owner. Without INDEXED BY the planner scans the whole table in seq
# order (to skip a sort): with a million finished results, 80 ms at every worker's start.
RUNNING_JOBS = """
SELECT owner, job_id FROM jobs INDEXED BY jobs_running WHERE state = 'RUNNING' ORDER BY seq
"""

LOST_OWNER = """
(owner IN (SELECT value FROM json_each(:dead))
 OR (owner NOT IN (SELECT value FROM json_each(:alive))
     AND owner NOT IN (SELECT worker_id FROM workers WHERE heartbeat_at >= :stale_before)))
"""

# A lost worker's job runs again if attempts remain, unless it was being cancelled.
_AGAIN = "(attempts < max_attempts AND NOT cancel_requested)"
RECOVER = f"""
UPDATE jobs
SET state = CASE WHEN {_AGAIN} THEN 'READY' ELSE 'FAILED' END,
    finished_at = CASE WHEN {_AGAIN} THEN NULL ELSE :now END,
    owner = NULL,
    errors = {append_error("CASE WHEN cancel_requested THEN :cancel_error ELSE :error END")}
WHERE state = 'RUNNING' AND {LOST_OWNER}
RETURNING CAST(job_id AS BLOB), state, typeof(hooks), CAST(hooks AS BLOB)
"""

FORGET_LOST_WORKERS = """
DELETE FROM workers
WHERE worker_id IN (SELECT value FROM json_each(:dead))
   OR (heartbeat_at < :stale_before
       AND worker_id NOT IN (SELECT value FROM json_each(:alive)))
"""

# Cancelling: a READY job is FAILED at once; a RUNNING one is flagged for its worker.
CANCEL_READY = f"""
UPDATE jobs
SET state = 'FAILED',
    finished_at = :now,
    errors = {append_error(":error")}
WHERE job_id = :job_id AND state = 'READY'
RETURNING state, typeof(hooks), CAST(hooks AS BLOB)
"""

CANCEL_RUNNING = """
UPDATE jobs SET cancel_requested = 1
WHERE job_id = :job_id AND state = 'RUNNING'
"""

CANCEL_REQUESTED = """
SELECT job_id FROM jobs INDEXED BY jobs_running
WHERE state = 'RUNNING' AND owner = :worker_id AND cancel_requested
"""

# A manual retry gives a FAILED job a fresh attempt budget and makes it due now.
RETRY = """
UPDATE jobs
SET state = 'READY',
    max_attempts = attempts + budget,
    run_after = NULL,
    due_at = :now,
    finished_at = NULL,
    owner = NULL,
    cancel_requested = 0,
    put_backs = 0,
    first_put_back_at = NULL
WHERE job_id = :job_id AND state = 'FAILED'
"""

# Pruning walks the table in rowid order, one window of rows per transaction, so it needs no
# index of its own (which would cost every completion a write) and never holds the lock long.
# An enqueue time that is not a stored time (a row written by other code) says nothing.
PRUNE_WINDOW_END = f"""
SELECT max(seq), max(CASE WHEN typeof(enqueued_at) = 'integer'
                           AND enqueued_at BETWEEN {EARLIEST_US} AND {LATEST_US}
                          THEN enqueued_at END)
FROM (SELECT seq, enqueued_at FROM jobs WHERE seq > :after ORDER BY seq LIMIT :batch)
"""

PRUNE = """
DELETE FROM jobs
WHERE seq > :after AND seq <= :upto
  AND state IN (SELECT value FROM json_each(:states))
  AND finished_at < :before
"""

SCHEDULE_LAST_SLOT = "SELECT last_slot FROM schedules WHERE name = :name"

SCHEDULE_SET_SLOT = """
INSERT INTO schedules (name, last_slot, last_job_id, updated_at)
VALUES (:name, :slot, :job_id, :now)
ON CONFLICT (name) DO UPDATE
SET last_slot = excluded.last_slot, last_job_id = excluded.last_job_id,
    updated_at = excluded.updated_at
"""
