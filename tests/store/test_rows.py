"""The columns of a job row are named once (``sql.JOB_COLUMN_NAMES``): the schema, every
statement that reads job rows, the record's fields and every position the code reads agree."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import litetasks
from litetasks._store import sql
from litetasks._store.records import ErrorRecord, Hook, JobRecord, JobState, NewJob
from litetasks._store.rows import decode_job, decode_rows
from litetasks._store.store import Store

# The columns of the jobs table that only the SQL uses.
# forwarded_*: read by _store/forwarding.py only (litetasks forward).
SQL_ONLY = {"seq", "due_at", "budget", "forwarded_to", "forwarded_id", "forwarded_at"}
# A value per column, each different from every other, as litetasks writes them.
DISTINCT: dict[str, Any] = {
    "job_id": "the-job",
    "task_path": "tests.tasks.add",
    "queue_name": "emails",
    "priority": 7,
    "args": "[1, 2]",
    "kwargs": '{"x": 3}',
    "state": "FAILED",
    "enqueued_at": 1_000_001,
    "run_after": 1_000_002,
    "started_at": 1_000_003,
    "last_attempted_at": 1_000_004,
    "finished_at": 1_000_005,
    "worker_ids": '["w1", "w2"]',
    "errors": '[{"exception_class_path": "builtins.ValueError", "traceback": "boom"}]',
    "return_value": '"done"',
    "attempts": 2,
    "max_attempts": 3,
    "owner": "w2",
    "unique_key": "key",
    "cancel_requested": 1,
    "hooks": '[{"when": "failure", "task_path": "tests.tasks.noop", "queue_name": "default", '
    '"priority": 0, "max_attempts": 1}]',
    "put_backs": 4,
    "first_put_back_at": 1_000_006,
}
DECODED = JobRecord(
    job_id="the-job",
    task_path="tests.tasks.add",
    queue_name="emails",
    priority=7,
    args_json="[1, 2]",
    kwargs_json='{"x": 3}',
    state=JobState.FAILED,
    enqueued_at_us=1_000_001,
    run_after_us=1_000_002,
    started_at_us=1_000_003,
    last_attempted_at_us=1_000_004,
    finished_at_us=1_000_005,
    worker_ids=("w1", "w2"),
    errors=(ErrorRecord(exception_class_path="builtins.ValueError", traceback="boom"),),
    return_json='"done"',
    attempts=2,
    max_attempts=3,
    owner="w2",
    unique_key="key",
    cancel_requested=True,
    hooks=(Hook(when="failure", task_path="tests.tasks.noop"),),
    put_backs=4,
    first_put_back_at_us=1_000_006,
)


def field_of(column: str) -> str:
    """The ``JobRecord`` field that holds ``column``."""
    renamed = {
        "args": "args_json",
        "kwargs": "kwargs_json",
        "return_value": "return_json",
        "run_after": "run_after_us",
    }
    return renamed.get(column, f"{column}_us" if column.endswith("_at") else column)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "tasks.sqlite3") as opened:
        yield opened


def test_the_column_list_is_the_jobs_table_but_the_columns_only_sql_uses(store: Store):
    table = [row[1] for row in store._db.execute("PRAGMA table_info(jobs)")]

    assert len(set(sql.JOB_COLUMN_NAMES)) == len(sql.JOB_COLUMN_NAMES)
    assert set(sql.JOB_COLUMN_NAMES) == set(table) - SQL_ONLY
    assert sql.CLAIMED_COLUMN_NAMES[sql.CLAIMED_DUE_AT] == "due_at"
    assert sql.CLAIMED_COLUMN_NAMES[sql.CLAIMED_SEQ] == "seq"


def test_a_job_record_holds_the_columns_in_their_order():
    fields = [f.name for f in dataclasses.fields(JobRecord)]

    assert fields[: len(sql.JOB_COLUMN_NAMES)] == [field_of(c) for c in sql.JOB_COLUMN_NAMES]


def test_a_row_is_read_by_the_positions_of_the_column_list():
    row = [DISTINCT[column] for column in sql.JOB_COLUMN_NAMES]

    assert decode_job(row) == DECODED
    assert decode_job([*row, 1_000_002, 42]) == DECODED  # a claimed row: due_at, seq follow


def test_a_malformed_row_is_read_by_the_same_positions():
    # The slow path (a value litetasks did not write) reads each column by its name.
    row = [DISTINCT[column] for column in sql.JOB_COLUMN_NAMES]
    row[sql.JOB_COLUMN_NAMES.index("priority")] = "high"

    job = decode_job(row)

    assert [column for column, _ in job.malformed] == ["priority"]
    assert dataclasses.replace(job, priority=7, malformed=()) == DECODED


@pytest.mark.parametrize(
    ("statement", "columns"),
    [
        (f"SELECT {sql.JOB_COLUMNS} FROM jobs", sql.JOB_COLUMN_NAMES),
        (sql.TAKEN_ROWS.replace(":seqs", "'[1]'"), sql.CLAIMED_COLUMN_NAMES),
        (sql.CLAIM_ANY.replace(":now", "0").replace(":limit", "1"), sql.CLAIMED_COLUMN_NAMES),
    ],
    ids=["select", "taken rows", "claim"],
)
def test_statements_reading_job_rows_return_the_column_list(
    store: Store, statement: str, columns: tuple[str, ...]
):
    store.enqueue([NewJob(job_id="a", task_path="tests.tasks.noop")])

    cursor = store._db.execute(statement, {"worker_id": "w"})
    names = tuple(column[0] for column in cursor.description)
    cursor.fetchall()

    assert names == columns


def test_rows_read_as_blobs_decode_as_the_plain_rows(store: Store):
    store.enqueue([NewJob(job_id="a", task_path="tests.tasks.noop", args_json="[1]")])
    [claimed] = store.claim("w")
    [taken] = store._db.execute(sql.TAKEN_ROWS_RAW, {"seqs": "[1]"}).fetchall()
    raw = store._db.execute(sql.JOB_ROW_RAW, ("a",)).fetchone()
    [json_row] = json.loads(store._db.execute(sql.TAKEN, {"seqs": "[1]"}).fetchone()[0])

    assert decode_job(decode_rows([taken])[0]) == claimed
    assert decode_job(decode_rows([raw])[0]) == store.get("a") == claimed
    assert decode_job(json_row) == claimed


def test_no_module_spells_out_the_column_list():
    # Every statement that reads job rows builds on sql.JOB_COLUMNS; a hand-written copy would
    # drift from it.
    spelled = re.compile(r"(SELECT|RETURNING)\s+job_id,\s*task_path", re.IGNORECASE)
    package = Path(litetasks.__file__).parent

    assert [p.name for p in package.rglob("*.py") if spelled.search(p.read_text())] == []
