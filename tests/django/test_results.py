"""The one place that builds ``TaskResult``s from stored jobs (``litetasks._django.results``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from django.test import override_settings

from litetasks._django.backend import SQLiteBackend
from litetasks._django.compat import TaskResultStatus
from litetasks._django.results import (
    finished_result,
    from_us,
    result_from_job,
    running_result,
    to_us,
)
from litetasks._store.clock import EPOCH, LATEST_US, us_from_datetime, utc_datetime
from litetasks._store.records import ErrorRecord, Outcome
from tests import tasks

BOOM = ErrorRecord(exception_class_path="builtins.ValueError", traceback="ValueError: boom\n")


def test_a_read_back_result_has_every_field_the_row_holds(backend: SQLiteBackend) -> None:
    enqueued = tasks.add.enqueue(1, 2)
    [job] = backend.store.claim("w1")
    backend.store.record(
        [
            Outcome(
                job_id=job.job_id,
                worker_id="w1",
                attempt=1,
                started_at_us=job.last_attempted_at_us or 0,
                finished_at_us=(job.last_attempted_at_us or 0) + 5,
                return_json="3",
            )
        ]
    )
    stored = backend.store.get(enqueued.id)

    result = result_from_job(tasks.add, stored, "default")

    assert (result.id, result.status, result.args, result.kwargs) == (
        enqueued.id,
        TaskResultStatus.SUCCESSFUL,
        [1, 2],
        {},
    )
    assert (result.enqueued_at, result.started_at, result.finished_at) == (
        enqueued.enqueued_at,
        from_us(stored.started_at_us),
        from_us(stored.finished_at_us),
    )
    assert (result.worker_ids, result.errors, result.return_value) == (["w1"], [], 3)
    assert backend.get_result(enqueued.id).finished_at == result.finished_at


def test_a_running_result_starts_at_the_attempts_start_and_keeps_the_first(
    backend: SQLiteBackend,
) -> None:
    tasks.add.enqueue(1, 2)
    [job] = backend.store.claim("w1")
    begun = (job.last_attempted_at_us or 0) + 1_000  # prefetched: it starts after the claim

    first = running_result(tasks.add, job, [1, 2], {}, begun, "default")
    job.attempts, job.started_at_us, job.errors = 2, 1_000_000, (BOOM,)
    again = running_result(tasks.add, job, [1, 2], {}, begun, "default")

    assert (first.status, first.started_at, first.last_attempted_at) == (
        TaskResultStatus.RUNNING,
        from_us(begun),
        from_us(begun),
    )
    assert first.finished_at is None and first.errors == []
    assert (again.started_at, again.last_attempted_at) == (from_us(1_000_000), from_us(begun))
    assert [e.exception_class_path for e in again.errors] == ["builtins.ValueError"]


def test_a_finished_result_is_a_copy_with_the_outcome(backend: SQLiteBackend) -> None:
    tasks.add.enqueue(1, 2)
    [job] = backend.store.claim("w1")
    running = running_result(tasks.add, job, [1, 2], {}, 10, "default")
    outcome = Outcome(
        job_id=job.job_id, worker_id="w1", attempt=1, started_at_us=10, finished_at_us=20
    )

    succeeded = finished_result(running, outcome, value=3)
    failed = finished_result(running, outcome, error=BOOM)

    assert (succeeded.status, succeeded.finished_at, succeeded.return_value) == (
        TaskResultStatus.SUCCESSFUL,
        from_us(20),
        3,
    )
    assert (failed.status, [e.traceback for e in failed.errors]) == (
        TaskResultStatus.FAILED,
        ["ValueError: boom\n"],
    )
    assert (running.status, running.errors, running.finished_at) == (
        TaskResultStatus.RUNNING,
        [],
        None,
    )


def test_stored_times_convert_both_ways_in_one_place() -> None:
    moment = datetime(2026, 5, 1, 10, 0, 30, 123456, tzinfo=timezone.utc)
    us = us_from_datetime(moment)

    assert utc_datetime(us) == moment
    assert utc_datetime(2**63 - 1) == utc_datetime(LATEST_US)  # total: clamped, never overflows
    assert to_us(moment) == us
    assert from_us(us) == moment
    with override_settings(USE_TZ=False, TIME_ZONE="Europe/Berlin"):
        assert from_us(us) == datetime(2026, 5, 1, 12, 0, 30, 123456)
        assert to_us(datetime(2026, 5, 1, 12, 0, 30, 123456)) == us
    assert utc_datetime(0) == EPOCH and utc_datetime(1) - EPOCH == timedelta(microseconds=1)
