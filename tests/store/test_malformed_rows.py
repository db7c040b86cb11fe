"""A row holding values litetasks did not write (and cannot read) fails alone.

Rows are corrupted with raw ``UPDATE`` statements, as another program, a bad migration or a hand
edit would. Before, such a row made the claim's SQL fail (aborting every claim and outcome of its
transaction: workers crash-looped and nothing ran), crashed the dispatcher after the claim (its
co-claimed tasks then FAILED as lost), or stopped the supervisor's recovery. Now the claim fails
that job alone, with a ``MalformedJob`` error naming the column, its bad value replaced; every
other path that writes or reads a row (recording, hooks, recovery, cancel, release, ``get``,
counts) goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litetasks._store.clock import EARLIEST_US, LATEST_US
from litetasks._store.records import (
    ErrorRecord,
    Hook,
    JobRecord,
    JobState,
    NewJob,
    Outcome,
)
from litetasks._store.store import Store
from litetasks.exceptions import JobNotFound

START_US = 1_700_000_000_000_000
MALFORMED = "litetasks.exceptions.MalformedJob"
BOOM = ErrorRecord(exception_class_path="builtins.ValueError", traceback="ValueError: boom\n")
LOST = ErrorRecord(exception_class_path="litetasks.exceptions.WorkerLost", traceback="lost\n")

# (column, SQL value): every kind of value a row can hold that litetasks never writes there.
BAD_VALUES = [
    ("errors", "'[bad'"),
    ("errors", "'{}'"),
    ("errors", "'[1]'"),
    ("errors", """'[{"exception_class_path": 1, "traceback": "x"}]'"""),
    ("errors", "x'5b5d'"),
    ("hooks", "'{bad'"),
    ("hooks", "'5'"),
    ("hooks", """'[{"when": "never", "task_path": "tests.tasks.noop"}]'"""),
    ("hooks", """'[{"when": "failure", "nope": 1}]'"""),
    ("hooks", "x'6869'"),  # bytes, as a driver writes them
    ("worker_ids", "'nope'"),
    ("worker_ids", "'{}'"),
    ("worker_ids", "'[1]'"),
    ("worker_ids", "x'00'"),
    ("priority", "'high'"),
    ("priority", "1.5"),
    ("priority", "x'01'"),
    ("run_after", str(LATEST_US + 1)),
    ("run_after", str(EARLIEST_US - 1)),
    ("run_after", "'soon'"),
    ("run_after", "1.5"),
    ("due_at", "'soon'"),
    ("due_at", str(2**62)),
    ("due_at", str(-(2**62))),
    ("due_at", "x'00'"),
    ("enqueued_at", "'yesterday'"),
    ("enqueued_at", str(2**62)),
    ("started_at", "'x'"),
    ("task_path", "x'00'"),
    ("task_path", "CAST(x'ff' AS TEXT)"),  # text that is not UTF-8
    ("queue_name", "CAST(x'ff' AS TEXT)"),
    ("args", "x'00'"),
    ("kwargs", "CAST(x'7bff7d' AS TEXT)"),
    ("max_attempts", "'x'"),
    ("max_attempts", "0"),
    ("cancel_requested", "'x'"),
    ("unique_key", "x'6869'"),
    ("return_value", "x'6869'"),
    ("job_id", "x'00'"),
]
CASES = [pytest.param(column, value, id=f"{column}={value}") for column, value in BAD_VALUES]


class Clock:
    def __init__(self) -> None:
        self.now = START_US

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    with Store(tmp_path / "tasks.sqlite3", clock=clock) as opened:
        yield opened


def enqueue(store: Store, job_id: str, **fields: Any) -> None:
    store.enqueue([NewJob(job_id=job_id, task_path="tests.tasks.noop", **fields)])


def corrupt(store: Store, job_id: str, column: str, value: str) -> int:
    """Write ``value`` (SQL) into ``column`` of ``job_id`` behind the store's back; its seq."""
    seq = int(store._db.execute("SELECT seq FROM jobs WHERE job_id = ?", (job_id,)).get)
    if column == "due_at":  # a due time counts when run_after is set
        store._db.execute("UPDATE jobs SET run_after = due_at WHERE seq = ?", (seq,))
    store._db.execute(f"UPDATE jobs SET {column} = {value} WHERE seq = ?", (seq,))
    return seq


def row_of(store: Store, seq: int) -> JobRecord:
    job_id = store._db.execute("SELECT job_id FROM jobs WHERE seq = ?", (seq,)).get
    return store.get(str(job_id))


def assert_failed_naming(job: JobRecord, column: str) -> ErrorRecord:
    assert job.state is JobState.FAILED
    assert job.owner is None
    assert job.finished_at_us is not None
    assert job.malformed == ()  # the bad value was replaced: the row reads cleanly now
    assert job.attempts == len(job.worker_ids)
    error = job.errors[-1]
    assert error.exception_class_path == MALFORMED
    assert f"column {column!r} holds" in error.traceback
    assert "so the task never ran" in error.traceback
    assert "find it, then enqueue the task again" in error.traceback
    return error


# -- the claim ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("column", "value"), CASES)
def test_the_claim_fails_a_row_with_a_bad_value_and_takes_the_others_in_order(
    store: Store, column: str, value: str
) -> None:
    enqueue(store, "first", priority=5)
    enqueue(store, "bad", priority=1, hooks=(Hook(when="failure", task_path="tests.tasks.add"),))
    enqueue(store, "second", priority=1)
    enqueue(store, "third", priority=-5)
    seq = corrupt(store, "bad", column, value)
    assert store.get("first").malformed == ()

    claimed = store.claim("w1", limit=10)

    # Its on_failure hook was enqueued (unless the hooks were the bad value), and claimed too.
    assert [job.job_id for job in claimed[:3]] == ["first", "second", "third"]
    hooks = [] if column == "hooks" else ["tests.tasks.add"]
    assert [job.task_path for job in claimed[3:]] == hooks
    assert_failed_naming(row_of(store, seq), column)
    assert store.claim("w1", limit=10) == []
    assert store.integrity_check() == "ok"


# Bad rows of one claim fail in claim order, so their hooks are enqueued (and run) in it too.
# Before, they failed in the order SQLite returned the claimed rows (unspecified; seq order in
# practice), so a priority 5 job's hook ran after a priority -5 job's one enqueued before it.
# (priorities of the three jobs, SQL values): the corruption and the jobs' claim order vary.
ORDERED_FAILURES = [
    pytest.param((-5, 0, 5), ("errors", "'[bad'"), id="json-path"),
    pytest.param((-5, 0, 5), ("worker_ids", "x'00'"), id="rows-path"),
    pytest.param((-5, 0, 5), ("kwargs", "CAST(x'7bff7d' AS TEXT)"), id="raw-path"),
    pytest.param(("1.5", "'high'", "x'01'"), ("priority", None), id="bad-priorities"),
]


@pytest.mark.parametrize(("priorities", "corruption"), ORDERED_FAILURES)
def test_bad_rows_of_one_claim_fail_in_claim_order_and_so_do_their_hooks(
    store: Store, priorities: tuple[Any, ...], corruption: tuple[str, str | None]
) -> None:
    hook = (Hook(when="failure", task_path="tests.tasks.add"),)
    for name in ("last", "middle", "first"):  # enqueued in the reverse of the claim order
        enqueue(store, name, hooks=hook)
    column, value = corruption
    for name, priority in zip(("last", "middle", "first"), priorities, strict=True):
        corrupt(store, name, column, str(priority) if value is None else value)
        if value is not None:
            store._db.execute("UPDATE jobs SET priority = ? WHERE job_id = ?", (priority, name))
    enqueue(store, "after", priority=-10)

    # The claim fails the three, then takes their hooks (priority 0, due now, FIFO).
    claimed = store.claim("w1", limit=3)

    assert [json.loads(job.args_json) for job in claimed] == [["first"], ["middle"], ["last"]]
    assert [job.job_id for job in store.claim("w1", limit=3)] == ["after"]


@pytest.mark.parametrize(("column", "value"), CASES)
def test_a_claim_of_one_fails_the_bad_row_and_takes_the_next_job(
    store: Store, column: str, value: str
) -> None:
    enqueue(store, "bad", priority=100)
    enqueue(store, "good")
    seq = corrupt(store, "bad", column, value)

    queues = ["default"] if column != "queue_name" else None
    claimed = store.claim("w1", queues=queues, limit=1)

    assert [job.job_id for job in claimed] == ["good"]  # the claim went on past the bad row
    assert_failed_naming(row_of(store, seq), column)
    assert store.claim("w1", limit=1) == []


@pytest.mark.parametrize(("column", "value"), CASES)
def test_get_never_raises_and_names_the_bad_column(store: Store, column: str, value: str) -> None:
    enqueue(store, "bad")
    seq = corrupt(store, "bad", column, value)

    job = row_of(store, seq) if column != "job_id" else None
    if column in ("due_at",):  # not a column of the record: read by the claim only
        assert job is not None and job.malformed == ()
        return
    if job is not None:
        assert [c for c, _ in job.malformed] == [column]
        assert job.malformed[0][1].startswith(f"column {column!r} holds ")
    assert sum(store.counts().values()) == 1
    assert store.next_due_at() is not None


def test_a_row_whose_repair_cannot_be_written_is_set_aside(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    enqueue(store, "bad", priority=1)
    enqueue(store, "good")
    seq = corrupt(store, "bad", "job_id", "x'00'")
    enqueue(store, f"malformed-{seq}")  # the id its repair would take: a unique constraint fails

    with caplog.at_level(logging.ERROR, logger="litetasks._store.malformed"):
        claimed = store.claim("w1", limit=10)

    assert [job.job_id for job in claimed] == ["good", f"malformed-{seq}"]
    row = store._db.execute(
        "SELECT state, owner, typeof(job_id), errors FROM jobs WHERE seq = ?", (seq,)
    ).fetchone()
    assert row == ("FAILED", None, "blob", "[]")  # nothing but its state and owner written
    assert "set aside as FAILED" in caplog.text
    assert store.claim("w1", limit=10) == []


# -- recording, hooks, recovery, cancel, release -----------------------------------------------


def claim_all(store: Store, worker_id: str = "w1") -> dict[str, JobRecord]:
    return {job.job_id: job for job in store.claim(worker_id, limit=10)}


def outcome(job: JobRecord, **fields: Any) -> Outcome:
    return Outcome(
        job_id=job.job_id,
        worker_id=str(job.owner),
        attempt=job.attempts,
        started_at_us=START_US,
        finished_at_us=START_US,
        **fields,
    )


@pytest.mark.parametrize("value", ["'[bad'", "'{}'", "x'00'", "5"])
def test_a_failure_is_recorded_when_errors_went_bad_while_the_task_ran(
    store: Store, value: str
) -> None:
    enqueue(store, "bad")
    enqueue(store, "other")
    jobs = claim_all(store)
    store._db.execute(f"UPDATE jobs SET errors = {value} WHERE job_id = 'bad'")

    counted = store.record([outcome(jobs["bad"], error=BOOM), outcome(jobs["other"], error=BOOM)])

    assert counted == [True, True]
    bad = store.get("bad")
    assert bad.state is JobState.FAILED
    assert bad.malformed == ()
    assert [e.exception_class_path for e in bad.errors] == [MALFORMED, "builtins.ValueError"]
    assert "column 'errors'" in bad.errors[0].traceback
    assert store.get("other").errors == (BOOM,)


@pytest.mark.parametrize("value", ["'[bad'", "'{}'", "x'00'"])
def test_recovery_and_cancel_write_their_error_when_errors_went_bad(
    store: Store, value: str
) -> None:
    enqueue(store, "running")
    enqueue(store, "other-running")
    claim_all(store, "dead-worker")
    enqueue(store, "ready")
    for job_id in ("running", "ready"):
        store._db.execute(f"UPDATE jobs SET errors = {value} WHERE job_id = ?", (job_id,))

    recovered = store.recover_lost(stale_before_us=START_US, error=LOST, known_dead=["dead-worker"])
    cancelled = store.cancel(["ready"])

    assert sorted(recovered) == [("other-running", JobState.FAILED), ("running", JobState.FAILED)]
    assert store.get("other-running").errors == (LOST,)
    assert cancelled == {"ready": "cancelled"}
    for job_id, last in (("running", LOST.exception_class_path), ("ready", "TaskCancelled")):
        job = store.get(job_id)
        assert job.state is JobState.FAILED
        assert job.malformed == ()
        assert job.errors[0].exception_class_path == MALFORMED
        assert job.errors[1].exception_class_path.endswith(last)


def test_recovery_and_release_of_a_running_row_whose_id_is_not_utf8_go_on(store: Store) -> None:
    enqueue(store, "lost")
    enqueue(store, "released")
    enqueue(store, "other")
    claim_all(store, "dead-worker")
    for job_id in ("lost", "released"):
        store._db.execute(
            "UPDATE jobs SET job_id = CAST(x'ff' || CAST(job_id AS BLOB) AS TEXT),"
            " owner = ? WHERE job_id = ?",
            ("dead-worker" if job_id == "lost" else "w2", job_id),
        )

    recovered = store.recover_lost(
        stale_before_us=START_US, error=LOST, known_dead=["dead-worker"], known_alive=["w2"]
    )
    released = store.release("w2")

    assert sorted(recovered) == [("other", JobState.FAILED), ("\ufffdlost", JobState.FAILED)]
    assert released == ["\ufffdreleased"]
    assert [job.job_id for job in store.claim("w3", limit=10)] == []  # failed: its id
    assert store.counts() == {("default", JobState.FAILED): 3}
    failed = store._db.execute(
        "SELECT count(*) FROM jobs WHERE job_id LIKE 'malformed-%' AND errors LIKE ?",
        ("%column 'job_id' holds%",),
    ).get
    assert failed == 1  # the released one, claimed again and failed for its id


@pytest.mark.parametrize("value", ["'nope'", "'{}'", "x'00'"])
def test_release_puts_a_job_back_when_worker_ids_went_bad_and_the_claim_then_fails_it(
    store: Store, value: str
) -> None:
    enqueue(store, "bad")
    enqueue(store, "other")
    claim_all(store)
    store._db.execute(f"UPDATE jobs SET worker_ids = {value} WHERE job_id = 'bad'")

    assert sorted(store.release("w1")) == ["bad", "other"]
    assert [job.job_id for job in store.claim("w2", limit=10)] == ["other"]
    assert_failed_naming(store.get("bad"), "worker_ids")
    assert store.get("bad").worker_ids == ("w2",)


@pytest.mark.parametrize("value", ["'{bad'", "'[1]'", "x'00'", "CAST(x'ff' AS TEXT)", "5"])
@pytest.mark.parametrize("how", ["success", "failure", "cancel", "recover"])
def test_hooks_that_went_bad_while_the_task_ran_are_dropped_and_said_so(
    store: Store, value: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    hook = Hook(when="finish", task_path="tests.tasks.add")
    enqueue(store, "bad", hooks=(hook,))
    enqueue(store, "other", hooks=(hook,))
    jobs = claim_all(store)
    store._db.execute(f"UPDATE jobs SET hooks = {value} WHERE job_id = 'bad'")

    with caplog.at_level(logging.ERROR, logger="litetasks._store.malformed"):
        if how == "recover":
            store.recover_lost(stale_before_us=START_US, error=LOST, known_dead=["w1"])
        elif how == "cancel":  # flagged while RUNNING; its worker records TaskCancelled
            store.cancel(["bad", "other"])
            store.record([outcome(job, error=BOOM) for job in jobs.values()])
        else:
            fields: dict[str, Any] = {"return_json": "1"} if how == "success" else {"error": BOOM}
            assert store.record([outcome(job, **fields) for job in jobs.values()]) == [True] * 2

    bad = store.get("bad")
    assert bad.state is (JobState.SUCCESSFUL if how == "success" else JobState.FAILED)
    assert bad.malformed == ()
    assert bad.hooks == ()
    assert bad.errors[-1].exception_class_path == MALFORMED
    assert "column 'hooks'" in bad.errors[-1].traceback
    assert "no hook was enqueued" in bad.errors[-1].traceback
    assert "its hooks cannot be read" in caplog.text
    fired = store._db.execute("SELECT count(*) FROM jobs WHERE task_path = 'tests.tasks.add'").get
    assert fired == 1  # the other job's hook only


def test_a_blob_sqlite_reads_as_json_null_in_hooks_is_noticed_when_the_job_finishes(
    store: Store,
) -> None:
    # The claim reads rows as one JSON text, where SQLite reads a blob as JSONB: x'00' is null,
    # so the claim sees no hooks (checking every column's type there would double its cost).
    # The blob is still in the row: recording the job by itself finds it, and says so. (Recorded
    # in a group of successes known to have no hooks, the blob stays; reading the row reports
    # it, as here before the claim.)
    enqueue(store, "odd", hooks=(Hook(when="finish", task_path="tests.tasks.add"),))
    store._db.execute("UPDATE jobs SET hooks = x'00' WHERE job_id = 'odd'")
    assert [c for c, _ in store.get("odd").malformed] == ["hooks"]

    [job] = store.claim("w1")
    assert job.hooks == ()
    assert store.record([outcome(job, return_json="1")]) == [True]

    odd = store.get("odd")
    assert (odd.state, odd.hooks, odd.malformed) == (JobState.SUCCESSFUL, (), ())
    assert "column 'hooks'" in odd.errors[-1].traceback


def test_an_unknown_state_is_counted_nowhere_and_never_claimed(store: Store) -> None:
    enqueue(store, "odd")
    enqueue(store, "good")
    store._db.execute("UPDATE jobs SET state = 'PAUSED' WHERE job_id = 'odd'")

    assert store.counts() == {("default", JobState.READY): 1}
    assert [job.job_id for job in store.claim("w1", limit=10)] == ["good"]
    odd = store.get("odd")
    assert [c for c, _ in odd.malformed] == ["state"]


def test_a_due_time_that_is_not_a_stored_time_is_due_now(store: Store, clock: Clock) -> None:
    enqueue(store, "later", run_after_us=START_US + 3_600_000_000)
    assert store.next_due_at() == START_US + 3_600_000_000
    enqueue(store, "bad", run_after_us=START_US + 7_200_000_000)
    store._db.execute("UPDATE jobs SET due_at = -4611686018427387904 WHERE job_id = 'bad'")

    assert store.next_due_at() == clock()


# -- through Django: get_result, refresh, status, cancel, retry --------------------------------


@pytest.mark.parametrize(
    ("column", "value", "repaired"),
    [
        ("errors", "'[bad'", True),  # cancelling replaces it, appending its error
        ("hooks", "'{bad'", True),  # cancelling reads it: set to NULL, and said so
        ("run_after", str(LATEST_US + 1), True),  # a manual retry clears it
        ("run_after", str(-(2**62)), True),
        ("worker_ids", "'nope'", False),
        ("priority", "'high'", False),
        ("enqueued_at", "'yesterday'", False),
    ],
)
def test_results_status_cancel_and_retry_of_a_row_with_a_bad_value(
    backend: Any, column: str, value: str, repaired: bool
) -> None:
    from litetasks._cli.status import status_data
    from litetasks._django.compat import TaskResultStatus
    from litetasks.testing import drain
    from tests import tasks

    result = tasks.noop.enqueue()
    backend.store._db.execute(f"UPDATE jobs SET {column} = {value} WHERE job_id = ?", (result.id,))

    result.refresh()  # never raises: the bad value reads as a harmless one
    assert result.status == TaskResultStatus.READY
    assert status_data(backend)["queues"]["default"]["READY"] == 1
    assert backend.cancel([result.id]) == {result.id: "cancelled"}
    result.refresh()
    assert result.errors[-1].exception_class_path.endswith(
        "MalformedJob" if column == "hooks" else "TaskCancelled"
    )
    assert backend.retry([result.id]) == {result.id: "retried"}

    assert drain() == (1 if repaired else 0)  # else the claim fails it: nothing runs
    result.refresh()
    if repaired:
        assert result.status == TaskResultStatus.SUCCESSFUL
    else:
        assert result.status == TaskResultStatus.FAILED
        assert result.errors[-1].exception_class_path == MALFORMED
        assert f"column {column!r} holds" in result.errors[-1].traceback
    assert backend.store.get(result.id).malformed == ()
    assert sum(status_data(backend)["queues"]["default"].values()) == 1


def test_a_row_failed_for_a_bad_enqueued_at_does_not_stop_prune_before_older_results(
    store: Store, clock: Clock
) -> None:
    # Prune walks the table in seq order and stops at rows enqueued after its cut-off. The
    # repaired row must not look enqueued at the claim: the results behind it were finished
    # before the cut-off and must go (found by the store's state machine).
    enqueue(store, "bad")
    enqueue(store, "old")
    corrupt(store, "bad", "enqueued_at", "'yesterday'")
    store.cancel(["old"])  # FAILED, finished now
    clock.now += 1_000_000
    assert store.claim("w1", queues=None, limit=1) == []  # fails the bad row at the claim
    assert store.get("bad").state is JobState.FAILED

    deleted = store.prune(
        finished_before_us=clock.now, states={JobState.FAILED, JobState.SUCCESSFUL}, batch=1
    )

    assert deleted == 1
    with pytest.raises(JobNotFound):
        store.get("old")
    assert store.get("bad").enqueued_at_us == EARLIEST_US  # unknown: the earliest time a file holds


def test_a_blob_claimed_beside_text_that_is_not_utf8_is_still_not_text(store: Store) -> None:
    # Rows holding text that is not UTF-8 are read back with every text as a blob; a real blob
    # among them must not turn into text (it did: the job ran with args '\x00', then failed
    # without its repair; seen once in a full run of test_poison_rows_pool).
    enqueue(store, "text")
    enqueue(store, "blob")
    corrupt(store, "text", "task_path", "CAST(x'ff' AS TEXT)")
    corrupt(store, "blob", "args", "x'00'")

    assert store.claim("w1", queues=None, limit=4) == []

    for job_id, column in [("text", "task_path"), ("blob", "args")]:
        job = store.get(job_id)
        assert job.state is JobState.FAILED
        assert job.malformed == ()  # repaired
        assert f"column {column!r} holds" in job.errors[-1].traceback
