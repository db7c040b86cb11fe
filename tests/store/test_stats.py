"""Counters of finished tasks kept in the queue file (stats.py): totals, histograms, minutes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from litetasks._store import stats
from litetasks._store.records import JobState, NewJob
from litetasks._store.store import Store

from .test_store import LEASE_US, LOST, SECOND_US, FakeClock, failure, new_job, success, worker

MINUTE_US = 60 * SECOND_US


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_040_000_000)  # a minute's start


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    with Store(tmp_path / "tasks.sqlite3", clock=clock) as opened:
        yield opened


def run_all(store: Store, clock: FakeClock, *, fail: set[str] = frozenset(), run_s: float = 0.0):  # type: ignore[assignment, no-untyped-def]
    """Claim every due job and record it (several outcomes per transaction, as a pool does)."""
    jobs = store.claim("w1", limit=100)
    clock.advance(run_s)
    outcomes = []
    for job in jobs:
        outcome = failure(job, clock) if job.job_id in fail else success(job, clock)
        started = outcome.finished_at_us - int(run_s * SECOND_US)
        outcomes.append(dataclasses.replace(outcome, started_at_us=started, has_hooks=False))
    return store.record(outcomes)


def test_finished_tasks_are_counted_per_queue_task_and_state(store: Store, clock: FakeClock):
    store.enqueue([new_job(f"a{i}") for i in range(3)])
    store.enqueue([NewJob(job_id="e1", queue_name="emails", task_path="tests.tasks.add")])
    run_all(store, clock, fail={"a2", "e1"})
    assert store.counters.finished_stats().totals == {
        ("default", "tests.tasks.noop", "SUCCESSFUL"): 2,
        ("default", "tests.tasks.noop", "FAILED"): 1,
        ("emails", "tests.tasks.add", "FAILED"): 1,
    }


def test_counts_survive_pruning_and_reopening(store: Store, clock: FakeClock) -> None:
    store.enqueue([new_job(f"a{i}") for i in range(5)])
    run_all(store, clock)
    clock.advance(10)
    assert store.prune(finished_before_us=clock()) == 5
    with Store(store.path, clock=clock) as reopened:
        totals = reopened.counters.finished_stats().totals
    assert totals == {("default", "tests.tasks.noop", "SUCCESSFUL"): 5}


def test_a_retried_attempt_is_not_a_finish_and_its_last_attempt_is(store: Store, clock: FakeClock):
    store.enqueue([new_job("r", max_attempts=2)])
    [job] = store.claim("w1")
    store.record([failure(job, clock, retry_at_us=clock())])
    assert store.counters.finished_stats().totals == {}
    run_all(store, clock)
    assert store.counters.finished_stats().totals == {
        ("default", "tests.tasks.noop", "SUCCESSFUL"): 1
    }


def test_a_cancelled_ready_task_counts_failed_with_no_duration(store: Store, clock: FakeClock):
    store.enqueue([new_job("c")])
    store.cancel(["c"])
    result = store.counters.finished_stats()
    assert result.totals == {("default", "tests.tasks.noop", "FAILED"): 1}
    assert result.durations == {} and result.waits == {}


def test_a_recovered_task_that_fails_is_counted(store: Store, clock: FakeClock) -> None:
    store.register_worker(worker("w1", clock))
    store.enqueue([new_job("lost")])
    store.claim("w1")
    clock.advance(LEASE_US / SECOND_US + 1)
    store.recover_lost(stale_before_us=clock() - LEASE_US, error=LOST)
    assert store.get("lost").state == JobState.FAILED
    assert store.counters.finished_stats().totals == {("default", "tests.tasks.noop", "FAILED"): 1}


def test_durations_and_waits_fall_in_their_buckets(store: Store, clock: FakeClock) -> None:
    store.enqueue([new_job("slow")])
    clock.advance(2)  # it waits 2 s once due
    run_all(store, clock, run_s=0.3)
    durations = store.counters.finished_stats().durations[("default", "tests.tasks.noop")]
    waits = store.counters.finished_stats().waits[("default", "tests.tasks.noop")]
    assert durations.counts[stats.BUCKETS_S.index(0.5)] == 1 == sum(durations.counts)
    assert durations.sum_us == 300_000
    assert waits.counts[stats.BUCKETS_S.index(2.5)] == 1 == sum(waits.counts)
    assert waits.sum_us == 2 * SECOND_US


def test_finished_per_minute_gives_each_minute_s_successes_and_failures(
    store: Store, clock: FakeClock
) -> None:
    start = clock()
    store.enqueue([new_job("a"), new_job("b")])
    run_all(store, clock, fail={"b"})
    clock.advance(125)
    store.enqueue([new_job("c")])
    run_all(store, clock)
    assert store.counters.finished_per_minute(start) == [
        (start, 1, 1),
        (start + 2 * MINUTE_US, 1, 0),
    ]
    assert store.counters.finished_per_minute(start + MINUTE_US) == [(start + 2 * MINUTE_US, 1, 0)]


def test_minutes_older_than_a_day_are_dropped_and_totals_stay(store: Store, clock: FakeClock):
    start = clock()
    store.enqueue([new_job("old")])
    run_all(store, clock)
    clock.advance(stats.KEEP_MINUTES_S + 2 * 3600)
    store.enqueue([new_job("new")])
    run_all(store, clock)  # the hourly fold runs in this transaction
    assert store.counters.finished_per_minute(start) == [(clock() // MINUTE_US * MINUTE_US, 1, 0)]
    assert store.counters.finished_stats().totals == {
        ("default", "tests.tasks.noop", "SUCCESSFUL"): 2
    }
    minutes = store._db.execute("SELECT count(*) FROM finished_stats WHERE kind = 'minute'").get
    assert minutes == 1  # the table stays small
