"""Contract tests of ``Store`` on a real queue file, with an injected fake clock."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from litetasks._store import sql
from litetasks._store.records import (
    ErrorRecord,
    Hook,
    JobRecord,
    JobState,
    NewJob,
    Outcome,
    WorkerRecord,
)
from litetasks._store.schema import SCHEMA_VERSION, migrate
from litetasks._store.store import Store
from litetasks.exceptions import JobNotFound, SchemaVersionError, StoreError

START_US = 1_700_000_000_000_000
SECOND_US = 1_000_000
LEASE_US = 60 * SECOND_US
LOST = ErrorRecord(
    exception_class_path="litetasks.exceptions.WorkerLost", traceback="WorkerLost: gone\n"
)


class FakeClock:
    """A clock that moves only when told to (integer microseconds)."""

    def __init__(self, now_us: int = START_US) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> int:
        self.now_us += int(seconds * SECOND_US)
        return self.now_us


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.sqlite3"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[Store]:
    with Store(db_path, clock=clock) as opened:
        yield opened


def new_job(job_id: str, **fields: object) -> NewJob:
    return NewJob(job_id=job_id, task_path="tests.tasks.noop", **fields)  # type: ignore[arg-type]


def success(job: JobRecord, clock: FakeClock, value: str = "42") -> Outcome:
    assert job.owner is not None
    return Outcome(
        job_id=job.job_id,
        worker_id=job.owner,
        attempt=job.attempts,
        started_at_us=clock(),
        finished_at_us=clock(),
        return_json=value,
    )


def failure(job: JobRecord, clock: FakeClock, *, retry_at_us: int | None = None) -> Outcome:
    assert job.owner is not None
    return Outcome(
        job_id=job.job_id,
        worker_id=job.owner,
        attempt=job.attempts,
        started_at_us=clock(),
        finished_at_us=clock(),
        error=ErrorRecord(
            exception_class_path="builtins.ValueError", traceback=f"ValueError: {job.attempts}\n"
        ),
        retry_at_us=retry_at_us,
    )


def worker(worker_id: str, clock: FakeClock) -> WorkerRecord:
    return WorkerRecord(
        worker_id=worker_id,
        pid=1,
        host="elsewhere",
        boot_id="boot",
        proc_start=1,
        queues=None,
        started_at_us=clock(),
        heartbeat_at_us=clock(),
    )


def claim_ids(store: Store, worker_id: str = "w1", **kwargs: object) -> list[str]:
    return [job.job_id for job in store.claim(worker_id, **kwargs)]  # type: ignore[arg-type]


def claim_one(store: Store, worker_id: str = "w1") -> JobRecord:
    (job,) = store.claim(worker_id)
    return job


def row_count(path: Path) -> int:
    connection = apsw.Connection(str(path))
    try:
        return int(connection.execute("SELECT count(*) FROM jobs").get)
    finally:
        connection.close()


# -- enqueue ---------------------------------------------------------------------------------


def test_enqueue_returns_enqueued_at_and_stores_the_job_ready(store: Store, clock: FakeClock):
    enqueued_at = store.enqueue(
        [
            new_job(
                "a",
                queue_name="emails",
                priority=7,
                args_json="[1, 2]",
                kwargs_json='{"x": "y"}',
                max_attempts=3,
            )
        ]
    )

    assert enqueued_at == clock()
    job = store.get("a")
    assert job == JobRecord(
        job_id="a",
        task_path="tests.tasks.noop",
        queue_name="emails",
        priority=7,
        args_json="[1, 2]",
        kwargs_json='{"x": "y"}',
        state=JobState.READY,
        enqueued_at_us=enqueued_at,
        run_after_us=None,
        started_at_us=None,
        last_attempted_at_us=None,
        finished_at_us=None,
        worker_ids=(),
        errors=(),
        return_json=None,
        attempts=0,
        max_attempts=3,
        owner=None,
    )


def test_enqueue_of_a_list_stores_every_job(store: Store):
    store.enqueue([new_job(f"j{i}") for i in range(5)])

    assert store.counts() == {("default", JobState.READY): 5}


def test_enqueue_keeps_run_after(store: Store, clock: FakeClock):
    store.enqueue([new_job("later", run_after_us=clock() + 5 * SECOND_US)])

    job = store.get("later")
    assert job.run_after_us == clock() + 5 * SECOND_US
    assert job.due_at_us == job.run_after_us


# -- claim -----------------------------------------------------------------------------------


def test_claim_orders_by_priority_descending(store: Store):
    store.enqueue([new_job("low", priority=-5), new_job("high", priority=10), new_job("mid")])

    assert claim_ids(store, limit=3) == ["high", "mid", "low"]


def test_claim_orders_equal_priority_by_due_time(store: Store, clock: FakeClock):
    store.enqueue([new_job("enqueued-first")])
    clock.advance(10)
    # Enqueued later, but due earlier: run_after is before the first job's enqueue time.
    store.enqueue([new_job("due-first", run_after_us=clock() - 20 * SECOND_US)])
    store.enqueue([new_job("due-now", run_after_us=clock())])

    assert claim_ids(store, limit=3) == ["due-first", "enqueued-first", "due-now"]


def test_claim_is_fifo_within_equal_priority_and_due_time(store: Store):
    store.enqueue([new_job("b"), new_job("a"), new_job("c")])
    store.enqueue([new_job("0")])

    assert claim_ids(store) == ["b"]
    assert claim_ids(store, limit=10) == ["a", "c", "0"]


def test_claim_skips_jobs_whose_run_after_is_in_the_future(store: Store, clock: FakeClock):
    store.enqueue([new_job("later", priority=100, run_after_us=clock() + 30 * SECOND_US)])
    store.enqueue([new_job("now")])

    assert claim_ids(store, limit=5) == ["now"]
    clock.advance(29.999999)
    assert claim_ids(store) == []
    clock.advance(0.000001)
    assert claim_ids(store) == ["later"]


@pytest.mark.parametrize(
    ("queues", "expected"),
    [
        (None, ["d", "e", "r"]),
        (["default", "emails", "reports"], ["d", "e", "r"]),
        (["emails"], ["e"]),
        (("reports",), ["r"]),
        ({"emails", "reports"}, ["e", "r"]),
        (["default", "reports"], ["d", "r"]),
        (["nowhere"], []),
        ([], []),
    ],
)
def test_claim_serves_only_the_given_queues(store: Store, queues, expected):
    store.enqueue(
        [
            new_job("d"),
            new_job("e", queue_name="emails"),
            new_job("r", queue_name="reports"),
        ]
    )

    assert claim_ids(store, queues=queues, limit=10) == expected


def test_claim_returns_at_most_limit_jobs(store: Store):
    store.enqueue([new_job(f"j{i}", priority=i) for i in range(5)])

    assert claim_ids(store, limit=2) == ["j4", "j3"]
    assert claim_ids(store, limit=0) == []
    assert claim_ids(store, limit=10) == ["j2", "j1", "j0"]
    assert claim_ids(store, limit=10) == []


def test_claim_moves_the_job_to_running_under_the_worker(store: Store, clock: FakeClock):
    store.enqueue([new_job("a")])
    clock.advance(3)

    job = claim_one(store, "w1")

    assert job.state is JobState.RUNNING
    assert job.owner == "w1"
    assert job.attempts == 1
    assert job.worker_ids == ("w1",)
    assert job.started_at_us == job.last_attempted_at_us == clock()
    assert store.get("a") == job


def test_claim_never_returns_a_running_job(store: Store):
    store.enqueue([new_job("a")])
    claim_one(store, "w1")

    assert claim_ids(store, "w2") == []


def test_claim_from_two_stores_on_one_file_never_returns_the_same_job(
    store: Store, db_path: Path, clock: FakeClock
):
    store.enqueue([new_job(f"j{i:02}", priority=i % 3) for i in range(30)])
    with Store(db_path, clock=clock) as other:
        claimed: list[str] = []
        for turn in range(30):
            claimer = (store, other)[turn % 2]
            claimed += claim_ids(claimer, f"w{turn % 2}", limit=1 + turn % 3)

    assert len(claimed) == len(set(claimed)) == 30


# -- record ----------------------------------------------------------------------------------


def test_record_success_finishes_the_job(store: Store, clock: FakeClock):
    store.enqueue([new_job("a")])
    job = claim_one(store)
    clock.advance(2)

    assert store.record([success(job, clock, '{"sent": true}')]) == [True]

    done = store.get("a")
    assert done.state is JobState.SUCCESSFUL
    assert done.return_json == '{"sent": true}'
    assert done.finished_at_us == clock()
    assert done.owner is None
    assert done.attempts == 1
    assert done.worker_ids == ("w1",)
    assert done.errors == ()


def test_record_failure_without_retry_fails_the_job_with_the_error(store: Store, clock: FakeClock):
    store.enqueue([new_job("a", max_attempts=3)])
    job = claim_one(store)
    outcome = failure(job, clock)

    assert store.record([outcome]) == [True]

    failed = store.get("a")
    assert failed.state is JobState.FAILED
    assert failed.errors == (outcome.error,)
    assert failed.finished_at_us == clock()
    assert failed.owner is None
    assert failed.return_json is None


def test_record_failure_with_retry_returns_the_job_to_ready_at_retry_at(
    store: Store, clock: FakeClock
):
    store.enqueue([new_job("a", max_attempts=2)])
    first = claim_one(store, "w1")
    retry_at = clock() + 10 * SECOND_US

    assert store.record([failure(first, clock, retry_at_us=retry_at)]) == [True]

    waiting = store.get("a")
    assert waiting.state is JobState.READY
    assert waiting.due_at_us == retry_at
    assert waiting.finished_at_us is None
    assert waiting.owner is None
    assert len(waiting.errors) == 1
    assert waiting.attempts == len(waiting.worker_ids) == 1
    assert store.next_due_at() == retry_at
    clock.advance(9)
    assert claim_ids(store) == []

    clock.advance(1)
    second = claim_one(store, "w2")
    assert second.attempts == 2
    assert second.worker_ids == ("w1", "w2")
    assert second.started_at_us == first.started_at_us


def test_record_failure_with_retry_but_no_attempts_left_fails_the_job(
    store: Store, clock: FakeClock
):
    store.enqueue([new_job("a", max_attempts=2)])
    store.record([failure(claim_one(store), clock, retry_at_us=clock())])
    last = claim_one(store, "w2")

    assert store.record([failure(last, clock, retry_at_us=clock())]) == [True]

    failed = store.get("a")
    assert failed.state is JobState.FAILED
    assert [e.traceback for e in failed.errors] == ["ValueError: 1\n", "ValueError: 2\n"]
    assert failed.attempts == len(failed.worker_ids) == 2


def test_record_of_another_workers_outcome_changes_nothing(store: Store, clock: FakeClock):
    store.enqueue([new_job("a")])
    job = claim_one(store, "w1")
    before = store.get("a")

    wrong_worker = Outcome(
        job_id="a",
        worker_id="w2",
        attempt=job.attempts,
        started_at_us=1,
        finished_at_us=2,
        return_json="1",
    )

    assert store.record([wrong_worker]) == [False]
    assert store.get("a") == before


def test_record_of_a_stale_attempt_changes_nothing(store: Store, clock: FakeClock):
    store.enqueue([new_job("a", max_attempts=3)])
    first = claim_one(store, "w1")
    store.record([failure(first, clock, retry_at_us=clock())])
    claim_one(store, "w1")  # the same worker, a later attempt
    before = store.get("a")

    assert store.record([success(first, clock)]) == [False]
    assert store.record([failure(first, clock)]) == [False]
    assert store.get("a") == before


def test_record_of_a_finished_job_changes_nothing(store: Store, clock: FakeClock):
    store.enqueue([new_job("a")])
    job = claim_one(store)
    store.record([success(job, clock, "1")])
    before = store.get("a")

    assert store.record([success(job, clock, "2"), failure(job, clock)]) == [False, False]
    assert store.get("a") == before


def test_record_counts_each_outcome_of_a_batch_on_its_own(store: Store, clock: FakeClock):
    store.enqueue([new_job("a"), new_job("b")])
    a, _ = store.claim("w1", limit=2)
    stale_b = Outcome(
        job_id="b", worker_id="w1", attempt=7, started_at_us=1, finished_at_us=2, return_json="1"
    )

    assert store.record([success(a, clock), stale_b]) == [True, False]
    assert store.get("a").state is JobState.SUCCESSFUL
    assert store.get("b").state is JobState.RUNNING


@pytest.mark.parametrize("with_stale", [False, True], ids=["group-recorded", "group-undone"])
def test_record_of_many_outcomes_keeps_each_value_flag_and_hook_exactly(
    store: Store, clock: FakeClock, with_stale: bool
):
    # Successes are recorded in one statement, the rest one by one: the result must not tell.
    hook = Hook(when="success", task_path="tests.tasks.noop", queue_name="hooks")
    store.enqueue([new_job(name) for name in "abcdef"] + [new_job("h", hooks=(hook,))])
    jobs = {job.job_id: job for job in store.claim("w1", limit=10)}
    values = {
        "a": '"caf\u00e9 \u2603 \\" quoted"',
        "b": json.dumps("x" * 70_000),  # longer than a batch takes
        "c": '{"nested": [1, 2.5, null, true]}',
        "h": "null",
    }
    stale = Outcome(
        job_id="d", worker_id="w1", attempt=9, started_at_us=1, finished_at_us=2, return_json="1"
    )

    def hookless(outcome: Outcome) -> Outcome:  # as the worker reports them: recorded as a group
        return dataclasses.replace(outcome, has_hooks=False)

    outcomes = [
        hookless(success(jobs["a"], clock, values["a"])),
        failure(jobs["e"], clock),
        hookless(success(jobs["b"], clock, values["b"])),
        hookless(stale) if with_stale else stale,
        dataclasses.replace(success(jobs["h"], clock, values["h"]), has_hooks=True),
        hookless(success(jobs["c"], clock, values["c"])),
        hookless(success(jobs["c"], clock, "2")),  # the same attempt twice: only the first counts
        hookless(success(jobs["f"], clock, "3")),
    ]

    assert store.record(outcomes) == [True, True, True, False, True, True, False, True]
    for job_id, value in [*values.items(), ("f", "3")]:
        done = store.get(job_id)
        assert (done.state, done.return_json, done.owner) == (JobState.SUCCESSFUL, value, None)
    assert store.get("d").state is JobState.RUNNING
    assert store.get("e").state is JobState.FAILED
    [fired] = store.claim("w2", queues=["hooks"])
    assert json.loads(fired.args_json) == ["h"]


def test_record_and_claim_records_then_claims_in_one_call(store: Store, clock: FakeClock):
    store.enqueue([new_job("a"), new_job("b")])
    a = claim_one(store)

    counted, jobs = store.record_and_claim([success(a, clock)], "w1", limit=5)

    assert counted == [True]
    assert [job.job_id for job in jobs] == ["b"]


# -- release ---------------------------------------------------------------------------------


def test_release_returns_jobs_to_ready_without_counting_the_attempt(store: Store, clock: FakeClock):
    store.enqueue([new_job("a"), new_job("b")])
    store.claim("w1", limit=2)

    assert sorted(store.release("w1")) == ["a", "b"]

    for job_id in "ab":
        job = store.get(job_id)
        assert job.state is JobState.READY
        assert job.owner is None
        assert job.attempts == len(job.worker_ids) == 0
        assert job.started_at_us is None
        assert job.last_attempted_at_us is None
    assert claim_ids(store, "w2", limit=2) == ["a", "b"]


def test_release_only_the_named_jobs(store: Store):
    store.enqueue([new_job("a"), new_job("b")])
    store.claim("w1", limit=2)

    assert store.release("w1", ["b"]) == ["b"]
    assert store.get("a").state is JobState.RUNNING
    assert store.get("b").state is JobState.READY
    assert store.release("w1", []) == []


def test_release_leaves_other_workers_jobs_alone(store: Store):
    store.enqueue([new_job("a"), new_job("b")])
    store.claim("w1")
    store.claim("w2")

    assert store.release("w1") == ["a"]
    assert store.get("b").owner == "w2"


def test_release_pops_only_the_interrupted_attempt(store: Store, clock: FakeClock):
    store.enqueue([new_job("a", max_attempts=3)])
    first = claim_one(store, "w1")
    store.record([failure(first, clock, retry_at_us=clock())])
    clock.advance(1)
    claim_one(store, "w2")

    assert store.release("w2") == ["a"]

    job = store.get("a")
    assert job.attempts == 1
    assert job.worker_ids == ("w1",)
    assert job.started_at_us == first.started_at_us
    assert len(job.errors) == 1


# -- workers ---------------------------------------------------------------------------------


def test_register_and_heartbeat_keep_the_worker_row_fresh(store: Store, clock: FakeClock):
    store.register_worker(worker("w1", clock))
    clock.advance(5)

    assert store.heartbeat("w1") is True

    (row,) = store.get_workers()
    assert row.worker_id == "w1"
    assert row.heartbeat_at_us == clock()


def test_a_worker_row_keeps_its_thread_count_or_none_when_unknown(store: Store, clock: FakeClock):
    store.register_worker(dataclasses.replace(worker("w1", clock), threads=3))
    store.register_worker(worker("w2", clock))

    rows = {row.worker_id: row.threads for row in store.get_workers()}

    assert rows == {"w1": 3, "w2": None}


def test_heartbeat_of_an_unknown_worker_returns_false(store: Store):
    assert store.heartbeat("nobody") is False


def test_get_workers_lists_each_workers_running_jobs(store: Store, clock: FakeClock):
    store.register_worker(worker("w1", clock))
    store.register_worker(worker("w2", clock))
    store.enqueue([new_job("a"), new_job("b"), new_job("c")])
    store.claim("w1", limit=2)

    rows = {row.worker_id: row.current_job_ids for row in store.get_workers()}

    assert rows == {"w1": ("a", "b"), "w2": ()}
    assert store.get_running_owners() == {"w1"}


def test_unregister_releases_the_jobs_and_deletes_the_row(store: Store, clock: FakeClock):
    store.register_worker(worker("w1", clock))
    store.enqueue([new_job("a")])
    store.claim("w1")

    assert store.unregister_worker("w1") == ["a"]

    assert store.get_workers() == []
    assert store.get("a").state is JobState.READY
    assert store.heartbeat("w1") is False


# -- recover_lost ----------------------------------------------------------------------------


def recover(store: Store, clock: FakeClock, **kwargs: object) -> list[tuple[str, JobState]]:
    return store.recover_lost(stale_before_us=clock() - LEASE_US, error=LOST, **kwargs)  # type: ignore[arg-type]


def test_recover_retries_a_known_dead_workers_job_with_attempts_left(
    store: Store, clock: FakeClock
):
    store.register_worker(worker("w1", clock))
    store.enqueue([new_job("a", max_attempts=2)])
    store.claim("w1")

    assert recover(store, clock, known_dead=["w1"]) == [("a", JobState.READY)]

    job = store.get("a")
    assert job.state is JobState.READY
    assert job.owner is None
    assert job.errors == (LOST,)
    assert job.attempts == len(job.worker_ids) == 1
    assert job.finished_at_us is None
    assert store.get_workers() == []
    assert store.heartbeat("w1") is False


def test_recover_fails_a_known_dead_workers_job_without_attempts_left(
    store: Store, clock: FakeClock
):
    store.register_worker(worker("w1", clock))
    store.enqueue([new_job("a")])
    store.claim("w1")
    clock.advance(1)

    assert recover(store, clock, known_dead=["w1"]) == [("a", JobState.FAILED)]

    job = store.get("a")
    assert job.state is JobState.FAILED
    assert job.errors == (LOST,)
    assert job.errors[0].exception_class_path == "litetasks.exceptions.WorkerLost"
    assert job.finished_at_us == clock()
    assert job.owner is None


def test_recover_recovers_jobs_of_a_worker_whose_heartbeat_is_stale(store: Store, clock: FakeClock):
    store.register_worker(worker("w1", clock))
    store.enqueue([new_job("a", max_attempts=2)])
    store.claim("w1")
    clock.advance(60.000001)

    assert recover(store, clock) == [("a", JobState.READY)]
    assert store.get_workers() == []


def test_recover_leaves_a_worker_whose_heartbeat_is_fresh(store: Store, clock: FakeClock):
    store.register_worker(worker("w1", clock))
    store.enqueue([new_job("a")])
    store.claim("w1")
    clock.advance(60)  # heartbeat_at == stale_before: still fresh

    assert recover(store, clock) == []
    assert store.get("a").state is JobState.RUNNING
    assert [row.worker_id for row in store.get_workers()] == ["w1"]


def test_recover_leaves_a_known_alive_worker_with_a_stale_heartbeat(store: Store, clock: FakeClock):
    store.register_worker(worker("w1", clock))
    store.enqueue([new_job("a")])
    store.claim("w1")
    clock.advance(3600)

    assert recover(store, clock, known_alive=["w1"]) == []
    assert store.get("a").state is JobState.RUNNING
    assert store.heartbeat("w1") is True


def test_recover_recovers_jobs_whose_owner_has_no_worker_row(store: Store, clock: FakeClock):
    store.register_worker(worker("w1", clock))
    store.enqueue([new_job("orphan", max_attempts=2), new_job("kept")])
    store.claim("ghost")
    store.claim("w1")

    assert recover(store, clock) == [("orphan", JobState.READY)]
    assert store.get("kept").owner == "w1"


def test_recover_deletes_only_lost_workers_rows(store: Store, clock: FakeClock):
    store.register_worker(worker("stale", clock))
    store.register_worker(worker("alive-but-quiet", clock))
    clock.advance(61)
    store.register_worker(worker("fresh", clock))
    store.register_worker(worker("dead", clock))

    assert recover(store, clock, known_dead=["dead"], known_alive=["alive-but-quiet"]) == []

    assert {row.worker_id for row in store.get_workers()} == {"alive-but-quiet", "fresh"}
    assert store.heartbeat("stale") is False


def test_recover_then_record_of_the_lost_attempt_changes_nothing(store: Store, clock: FakeClock):
    store.enqueue([new_job("a", max_attempts=2)])
    lost = claim_one(store, "w1")
    recover(store, clock, known_dead=["w1"])
    before = store.get("a")

    assert store.record([success(lost, clock)]) == [False]
    assert store.get("a") == before


# -- reading ---------------------------------------------------------------------------------


def test_get_of_an_unknown_job_raises_job_not_found(store: Store):
    with pytest.raises(JobNotFound, match=re.escape("No job with id 'missing'.")) as caught:
        store.get("missing")

    assert caught.value.job_id == "missing"


def test_counts_are_per_queue_and_state(store: Store, clock: FakeClock):
    assert store.counts() == {}
    store.enqueue([new_job("a"), new_job("b"), new_job("c"), new_job("e", queue_name="emails")])
    a, b = store.claim("w1", queues=["default"], limit=2)
    store.record([success(a, clock), failure(b, clock)])
    store.claim("w1", queues=["emails"])

    assert store.counts() == {
        ("default", JobState.SUCCESSFUL): 1,
        ("default", JobState.FAILED): 1,
        ("default", JobState.READY): 1,
        ("emails", JobState.RUNNING): 1,
    }


def test_next_due_at_is_the_earliest_due_time_of_a_ready_job(store: Store, clock: FakeClock):
    assert store.next_due_at() is None
    now = clock()
    store.enqueue(
        [
            new_job("running"),
            new_job("soon", run_after_us=now + 5 * SECOND_US, queue_name="emails"),
            new_job("later", run_after_us=now + 9 * SECOND_US, queue_name="reports"),
        ]
    )
    store.claim("w1", queues=["default"])

    assert store.next_due_at() == now + 5 * SECOND_US
    assert store.next_due_at(["reports"]) == now + 9 * SECOND_US
    assert store.next_due_at(["default"]) is None
    assert store.now_us() == now


# -- maintenance -----------------------------------------------------------------------------


def test_checkpoint_truncates_the_wal_file(store: Store, db_path: Path):
    store.enqueue([new_job(f"j{i}", args_json=json.dumps(["x" * 500])) for i in range(50)])
    wal = Path(f"{db_path}-wal")
    assert wal.stat().st_size > 0

    frames, done = store.checkpoint()

    assert frames == done
    assert wal.stat().st_size == 0
    assert store.counts() == {("default", JobState.READY): 50}


def test_integrity_check_is_ok(store: Store):
    store.enqueue([new_job("a")])

    assert store.integrity_check() == "ok"


# -- the file --------------------------------------------------------------------------------


def user_version(path: Path) -> int:
    connection = apsw.Connection(str(path))
    try:
        return int(connection.execute("PRAGMA user_version").get)
    finally:
        connection.close()


def test_open_sets_the_schema_version_and_wal_mode(store: Store, db_path: Path):
    assert user_version(db_path) == SCHEMA_VERSION
    assert store._db.execute("PRAGMA journal_mode").get == "wal"


def test_reopening_keeps_the_jobs(db_path: Path, clock: FakeClock):
    with Store(db_path, clock=clock) as first:
        first.enqueue([new_job("a")])
    with Store(db_path, clock=clock) as second:
        assert second.get("a").state is JobState.READY
    assert user_version(db_path) == SCHEMA_VERSION


def test_a_version_1_file_is_migrated_in_place_keeping_its_jobs(db_path: Path, clock: FakeClock):
    from litetasks._store.schema import MIGRATIONS

    connection = apsw.Connection(str(db_path))
    connection.execute(MIGRATIONS[0])
    connection.execute("PRAGMA user_version = 1")
    connection.execute(
        "INSERT INTO jobs (job_id, task_path, queue_name, priority, args, kwargs, state, "
        "enqueued_at, due_at, max_attempts, attempts) "
        "VALUES ('old', 'app.tasks.f', 'default', 0, '[1]', '{}', 'FAILED', 1, 1, 3, 3)"
    )
    connection.close()

    with Store(db_path, clock=clock) as store:
        job = store.get("old")
        assert (job.state, job.args_json, job.max_attempts) == (JobState.FAILED, "[1]", 3)
        assert (job.unique_key, job.cancel_requested, job.hooks) == (None, False, ())
        # The attempt budget of a migrated job is its max_attempts: a retry grants 3 more.
        assert store.retry(["old"]) == {"old": "retried"}
        assert store.get("old").max_attempts == 6
    assert user_version(db_path) == SCHEMA_VERSION


def test_a_version_6_file_keeps_its_worker_rows_whose_threads_are_unknown(
    db_path: Path, clock: FakeClock
):
    from litetasks._store.schema import MIGRATIONS

    connection = apsw.Connection(str(db_path))
    for migration in MIGRATIONS[:6]:
        connection.execute(migration)
    connection.execute("PRAGMA user_version = 6")
    connection.execute(
        "INSERT INTO workers (worker_id, pid, host, boot_id, proc_start, pid_namespace, queues, "
        "started_at, heartbeat_at) VALUES ('old', 42, 'box', 'boot', 7, 'pid:[1]', "
        "'[\"emails\"]', 1, 2)"
    )
    connection.close()

    with Store(db_path, clock=clock) as store:
        [old] = store.get_workers()
    assert (old.worker_id, old.pid, old.host, old.queues) == ("old", 42, "box", ("emails",))
    assert (old.pid_namespace, old.started_at_us, old.heartbeat_at_us) == ("pid:[1]", 1, 2)
    assert old.threads is None
    assert user_version(db_path) == SCHEMA_VERSION == 7


def test_a_file_with_a_newer_schema_is_refused(db_path: Path):
    newer = SCHEMA_VERSION + 1
    connection = apsw.Connection(str(db_path))
    connection.execute(f"PRAGMA user_version = {newer}")
    connection.close()

    with pytest.raises(SchemaVersionError) as caught:
        Store(db_path)

    message = str(caught.value)
    assert f"schema version {newer}" in message
    assert f"supports up to {SCHEMA_VERSION}" in message
    assert "Upgrade litetasks." in message
    assert (caught.value.found, caught.value.supported) == (newer, SCHEMA_VERSION)
    assert isinstance(caught.value, StoreError)
    assert user_version(db_path) == newer


def test_a_new_queue_file_has_2k_pages_and_an_older_one_keeps_its_own(tmp_path: Path):
    # Smaller pages make each commit write less (see connection_page_size); a file made before,
    # with SQLite's default 4 KiB pages, must open and keep working unchanged.
    with Store(tmp_path / "new.sqlite3") as store:
        assert store._db.execute("PRAGMA page_size").get == 2048

    old = tmp_path / "old.sqlite3"
    connection = apsw.Connection(str(old))
    connection.execute("PRAGMA journal_mode = WAL").fetchall()
    migrate(connection)
    connection.close()
    with Store(old) as store:
        store.enqueue([NewJob(job_id="a", task_path="app.tasks.f")])
        assert store._db.execute("PRAGMA page_size").get == 4096
    with Store(old) as store:
        assert store.get("a").state == JobState.READY


@pytest.mark.parametrize("garbage", [b"not a database", os.urandom(4096)])
def test_a_file_that_is_not_sqlite_is_refused(db_path: Path, garbage: bytes):
    db_path.write_bytes(garbage)

    with pytest.raises(StoreError, match="is not a SQLite database") as caught:
        Store(db_path)

    assert caught.value.path == str(db_path)
    assert db_path.read_bytes() == garbage


@pytest.mark.parametrize(
    "tables",
    [
        "CREATE TABLE auth_user (id INTEGER PRIMARY KEY); INSERT INTO auth_user VALUES (1)",
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY)",
    ],
    ids=["app-database", "clashing-table"],
)
def test_a_sqlite_database_that_is_not_a_queue_file_is_refused(db_path: Path, tables: str):
    # Pointing OPTIONS["path"] at the app's own database must not add litetasks' tables to it.
    connection = apsw.Connection(str(db_path))
    connection.execute(tables)
    connection.close()

    with pytest.raises(StoreError, match="is not a litetasks queue file") as caught:
        Store(db_path)

    assert caught.value.path == str(db_path)
    connection = apsw.Connection(str(db_path))
    try:
        names = connection.execute("SELECT group_concat(name) FROM sqlite_schema").get
        assert "workers" not in str(names)
        assert connection.execute("PRAGMA user_version").get == 0
    finally:
        connection.close()


def test_a_missing_folder_is_refused(tmp_path: Path):
    path = tmp_path / "missing" / "tasks.sqlite3"

    with pytest.raises(StoreError, match="does not exist") as caught:
        Store(path)

    assert str(tmp_path / "missing") in str(caught.value)
    assert not path.parent.exists()


def test_the_queue_file_and_every_file_beside_it_are_private(db_path: Path):
    old_umask = os.umask(0)  # the modes must come from litetasks, not from the umask
    try:
        with Store(db_path) as opened:
            opened.enqueue([new_job("a")])
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in db_path.parent.iterdir()}
    finally:
        os.umask(old_umask)

    assert {f"{db_path.name}", f"{db_path.name}-wal", f"{db_path.name}-shm"} <= set(modes)
    assert modes == dict.fromkeys(modes, 0o600)


# -- locked and full files -------------------------------------------------------------------


@pytest.fixture
def write_lock(store: Store, db_path: Path) -> Iterator[apsw.Connection]:
    """Another connection holding the write lock (an open IMMEDIATE transaction)."""
    other = apsw.Connection(str(db_path))
    other.execute("BEGIN IMMEDIATE")
    yield other
    if not other.get_autocommit():
        other.execute("ROLLBACK")
    other.close()


@pytest.mark.parametrize("size", [1, 3])
def test_a_write_lock_held_past_busy_timeout_raises_store_error(
    db_path: Path, clock: FakeClock, write_lock: apsw.Connection, size: int
):
    jobs = [new_job(f"j{i}") for i in range(size)]
    with Store(db_path, clock=clock, busy_timeout_ms=100) as locked_out:
        with pytest.raises(StoreError, match="busy_timeout_ms=100") as caught:
            locked_out.enqueue(jobs)
        assert not isinstance(caught.value, apsw.Error)
        assert isinstance(caught.value.__cause__, apsw.BusyError)

        write_lock.execute("ROLLBACK")
        assert row_count(db_path) == 0
        locked_out.enqueue(jobs)

    assert row_count(db_path) == size


def test_a_claim_of_a_due_job_waits_for_the_write_lock_then_fails(
    db_path: Path, clock: FakeClock
) -> None:
    with Store(db_path, clock=clock, busy_timeout_ms=100) as store:
        store.enqueue([new_job("due")])
        other = apsw.Connection(str(db_path))
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="busy_timeout_ms=100") as caught:
                store.claim("w1")
            assert isinstance(caught.value.__cause__, apsw.BusyError)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert [job.job_id for job in store.claim("w1")] == ["due"]


@pytest.mark.parametrize(
    "queued",
    ["nothing", "a deferred job", "a paused queue's job", "another queue's job", "a skipped task"],
)
def test_a_claim_that_finds_nothing_due_takes_no_write_lock(
    db_path: Path, clock: FakeClock, queued: str
) -> None:
    # A pool claims at every wake-up, and when several pools serve one file every ring wakes
    # them all: most of those claims find nothing. Taking the write lock for them held off
    # every producer meanwhile (30 % of a busy pool's transactions changed nothing).
    with Store(db_path, clock=clock, busy_timeout_ms=2000) as store:
        if queued == "a deferred job":
            store.enqueue([new_job("later", run_after_us=clock() + 60 * SECOND_US)])
        elif queued == "a paused queue's job":
            store.enqueue([new_job("held", queue_name="held")])
            store.pausing.pause_queue("held")
        elif queued == "another queue's job":
            store.enqueue([new_job("elsewhere", queue_name="emails")])
        elif queued == "a skipped task":
            store.enqueue([new_job("skipped")])
        other = apsw.Connection(str(db_path))
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            skip = ["tests.tasks.noop"] if queued == "a skipped task" else ()
            assert store.claim("w1", queues=["default"], skip=skip) == []
            if queued != "another queue's job":
                assert store.claim("w1", skip=skip) == []  # every queue
            assert time.monotonic() - started < 1.0  # not the 2 s busy timeout
        finally:
            other.execute("ROLLBACK")
            other.close()


@pytest.mark.parametrize("size", [1, 20])
def test_a_full_disk_raises_store_error_and_writes_nothing(store: Store, db_path: Path, size):
    store.enqueue([new_job("before")])
    page_count = int(store._db.execute("PRAGMA page_count").get)
    store._db.execute(f"PRAGMA max_page_count = {page_count + 2}")
    big = json.dumps(["x" * (40_000 // size)])
    jobs = [new_job(f"j{i}", args_json=big) for i in range(size)]

    with pytest.raises(StoreError, match=r"disk .* is full") as caught:
        store.enqueue(jobs)

    assert isinstance(caught.value.__cause__, apsw.FullError)
    assert store._db.get_autocommit()
    assert store.counts() == {("default", JobState.READY): 1}
    assert row_count(db_path) == 1
    store._db.execute("PRAGMA max_page_count = 1073741823")
    store.enqueue(jobs)
    assert row_count(db_path) == 1 + size
    assert store.integrity_check() == "ok"


class FailingConnection:
    """Stands in for the store's apsw connection: every statement raises ``error``."""

    def __init__(self, real: apsw.Connection, error: apsw.Error) -> None:
        self.real = real
        self.error = error

    def execute(self, *args: object, **kwargs: object) -> None:
        raise self.error

    executemany = execute

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


_AN_OUTCOME = Outcome(
    job_id="a",
    worker_id="w1",
    attempt=1,
    started_at_us=START_US,
    finished_at_us=START_US,
    return_json="1",
)  # recording nothing writes nothing: a claim without outcomes reads first (claiming.py)
STORE_CALLS = {
    "enqueue": lambda s: s.enqueue([new_job("a")]),
    "claim": lambda s: s.claim("w1"),
    "record": lambda s: s.record([_AN_OUTCOME]),
    "record_and_claim": lambda s: s.record_and_claim([_AN_OUTCOME], "w1"),
    "release": lambda s: s.release("w1"),
    "register_worker": lambda s: s.register_worker(worker("w1", FakeClock())),
    "heartbeat": lambda s: s.heartbeat("w1"),
    "unregister_worker": lambda s: s.unregister_worker("w1"),
    "recover_lost": lambda s: s.recover_lost(stale_before_us=0, error=LOST),
    "get_workers": lambda s: s.get_workers(),
    "get_running_owners": lambda s: s.get_running_owners(),
    "get": lambda s: s.get("a"),
    "counts": lambda s: s.counts(),
    "next_due_at": lambda s: s.next_due_at(),
    "next_due_at(queues)": lambda s: s.next_due_at(["emails"]),
    "checkpoint": lambda s: s.checkpoint(),
    "integrity_check": lambda s: s.integrity_check(),
}


@pytest.mark.parametrize(
    "error",
    [
        apsw.BusyError("database is locked"),
        apsw.IOError("disk I/O error"),
        apsw.CorruptError("database disk image is malformed"),
        apsw.FullError("database or disk is full"),
        apsw.ReadOnlyError("attempt to write a readonly database"),
    ],
    ids=lambda error: type(error).__name__,
)
@pytest.mark.parametrize("call", STORE_CALLS.values(), ids=STORE_CALLS.keys())
def test_every_store_method_turns_sqlite_failures_into_store_errors(store: Store, call, error):
    # Callers (the worker's heartbeat and recovery loop, the supervisor) catch StoreError only:
    # a raw apsw error escaping any method would kill the thread that called it.
    store._db = FailingConnection(store._db, error)  # type: ignore[assignment]

    with pytest.raises(StoreError, match=re.escape(str(store.path))) as caught:
        call(store)

    assert caught.value.__cause__ is error


# -- query plans ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "PICK_ANY",
        "PICK_ONE_QUEUE",
        "PICK_QUEUES",
        "TAKE",
        "TAKEN",
        "TAKEN_ROWS",
        "RECORD_SUCCESS",
        "RECORD_SUCCESSES",
        "RECORD_FAILURE",
        "RELEASE",
        "RECOVER",
        "RUNNING_JOBS",
        "CANCEL_REQUESTED",
    ],
)
def test_worker_statements_never_scan_the_whole_jobs_table(store: Store, name: str):
    # Finished results pile up (a million is ordinary): a statement a worker runs per claim,
    # per outcome or per start must reach its rows through an index, not a scan of them all.
    statement = getattr(sql, name)
    bindings = {
        parameter: "[]"
        if parameter in ("dead", "alive", "job_ids", "seqs", "batch", "queues")
        else 1
        for parameter in re.findall(r":(\w+)", statement)
    }
    plan = store._db.execute(f"EXPLAIN QUERY PLAN {statement}", bindings).fetchall()
    details = [str(row[3]) for row in plan]
    assert not [d for d in details if re.fullmatch(r"SCAN jobs( .*)?", d) and "INDEX" not in d]
