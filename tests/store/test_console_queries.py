"""The console's queries (``_store/console.py``, ``_store/overview.py``) on a real queue file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from litetasks._store import console, overview
from litetasks._store.console import JobFilter
from litetasks._store.records import ErrorRecord, JobState, NewJob, Outcome
from litetasks._store.store import Store

START_US = 1_700_000_000_000_000
MINUTE_US = 60_000_000


class Clock:
    def __init__(self) -> None:
        self.now_us = START_US

    def __call__(self) -> int:
        return self.now_us


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Store:
    with Store(tmp_path / "tasks.sqlite3", clock=clock) as opened:
        yield opened


def enqueue(store: Store, n: int, **fields: object) -> list[str]:
    ids = [f"job-{store.console.newest_seq() + i + 1:05d}" for i in range(n)]
    store.enqueue([NewJob(job_id=i, task_path="app.tasks.send", **fields) for i in ids])  # type: ignore[arg-type]
    return ids


def finish(store: Store, clock: Clock, job_ids: list[str], *, fail: bool = False) -> None:
    claimed = store.claim("w1", limit=len(job_ids))
    assert sorted(j.job_id for j in claimed) == sorted(job_ids)
    error = ErrorRecord(exception_class_path="builtins.ValueError", traceback="ValueError: x\n")
    store.record(
        [
            Outcome(
                job_id=j.job_id,
                worker_id="w1",
                attempt=1,
                started_at_us=clock.now_us,
                finished_at_us=clock.now_us,
                return_json=None if fail else "1",
                error=error if fail else None,
            )
            for j in claimed
        ]
    )


def test_a_page_lists_matching_jobs_newest_first_and_pages_by_cursor(store: Store):
    ids = enqueue(store, 7)
    enqueue(store, 3, queue_name="emails")

    first = store.console.page(JobFilter(queue_name="default"), limit=4)
    second = store.console.page(JobFilter(queue_name="default"), before=first.next_before, limit=4)

    assert [job.job_id for _, job in first.jobs] == ids[::-1][:4]
    assert [job.job_id for _, job in second.jobs] == ids[::-1][4:]
    assert second.next_before is None and not second.is_partial


def test_a_page_filters_by_state_task_time_id_and_text_in_arguments(store: Store, clock: Clock):
    [old] = enqueue(store, 1, kwargs_json='{"email": "ada@example.com"}')
    clock.now_us += MINUTE_US
    [new] = enqueue(store, 1, args_json='["bob@example.com"]')
    finish(store, clock, [old, new], fail=True)
    enqueue(store, 1)

    def ids(**fields: object) -> list[str]:
        return [job.job_id for _, job in store.console.page(JobFilter(**fields)).jobs]  # type: ignore[arg-type]

    assert ids(state=JobState.FAILED) == [new, old]
    assert ids(text="ada@") == [old]
    assert ids(text="bob@") == [new]
    assert ids(since_us=START_US + 1) == [ids()[0], new]
    assert ids(until_us=START_US + 1) == [old]
    assert ids(job_id=old) == [old]
    assert ids(job_id=old, state=JobState.READY) == []
    assert ids(task_path="app.other") == []


def test_a_page_stops_at_its_scan_limit_and_says_where_to_go_on(store: Store):
    [match] = enqueue(store, 1, queue_name="emails")
    enqueue(store, 20)

    found = console.page(store._handle, JobFilter(queue_name="emails"), scan_rows=10)

    assert found.jobs == [] and found.is_partial
    rest = console.page(
        store._handle, JobFilter(queue_name="emails"), before=found.next_before, scan_rows=100
    )
    assert [job.job_id for _, job in rest.jobs] == [match]


def test_matching_ids_is_a_snapshot_of_what_the_page_showed(store: Store, clock: Clock):
    before = enqueue(store, 3)
    finish(store, clock, before, fail=True)
    upto, loaded_at = store.console.newest_seq(), clock.now_us
    clock.now_us += 1
    later = enqueue(store, 2)
    finish(store, clock, later, fail=True)

    ids = store.console.matching_ids(
        JobFilter(), state=JobState.FAILED, upto_seq=upto, finished_by_us=loaded_at
    )

    assert sorted(ids) == sorted(before)
    only = store.console.matching_ids(
        JobFilter(job_id=before[0]), state=JobState.FAILED, upto_seq=upto
    )
    assert only == [before[0]]


def test_delete_deletes_ready_and_finished_jobs_and_leaves_running_ones(store: Store, clock: Clock):
    done, running, ready = enqueue(store, 3)
    finish(store, clock, [done])
    store.claim("w2", limit=1)

    results = store.delete([done, running, ready, "missing"])

    assert results == {
        done: "deleted",
        running: "running",
        ready: "deleted",
        "missing": "not found",
    }
    assert [job.job_id for _, job in store.console.page(JobFilter()).jobs] == [running]


def test_counts_are_exact_for_ready_and_running_and_capped_for_finished(store: Store, clock: Clock):
    finish(store, clock, enqueue(store, 5))
    enqueue(store, 2, queue_name="emails")

    exact = store.console.counts()
    capped = overview.counts(store._handle, scan_rows=3)

    assert exact.by_queue == {("emails", JobState.READY): 2, ("default", JobState.SUCCESSFUL): 5}
    assert not exact.is_capped
    assert capped.is_capped and capped.by_queue[("default", JobState.SUCCESSFUL)] == 1


def test_oldest_due_is_per_queue_and_ignores_jobs_not_yet_due(store: Store, clock: Clock):
    enqueue(store, 1)
    enqueue(store, 1, run_after_us=START_US + MINUTE_US)
    clock.now_us += 5_000_000
    enqueue(store, 1)

    assert store.console.oldest_due() == {"default": START_US}


def test_finished_per_minute_counts_successes_and_failures_by_minute(store: Store, clock: Clock):
    finish(store, clock, enqueue(store, 2))
    clock.now_us += 2 * MINUTE_US
    finish(store, clock, enqueue(store, 1), fail=True)

    rows = store.console.finished_per_minute(since_us=START_US, until_us=START_US + 3 * MINUTE_US)

    first = START_US - START_US % MINUTE_US
    assert rows[0] == (first, 2, 0)
    assert (first + 2 * MINUTE_US, 0, 1) in rows
    assert sum(ok for _, ok, _ in rows) == 2


@pytest.mark.parametrize(
    "statement",
    [
        console._PAGE.format(
            columns="job_id", where=JobFilter(state=JobState.FAILED, text="x").where()[0]
        ),
        overview._READY,
        overview._RUNNING,
        overview._FINISHED,
        overview._OLDEST_DUE,
    ],
)
def test_console_statements_read_a_rowid_range_or_an_index_never_the_whole_table(
    store: Store, statement: str
):
    bindings = {name: 1 for name in re.findall(r":(\w+)", statement)}
    plan = store._db.execute(f"EXPLAIN QUERY PLAN {statement}", bindings).fetchall()
    details = [str(row[3]) for row in plan]
    scans = [d for d in details if re.fullmatch(r"SCAN jobs( .*)?", d) and "INDEX" not in d]
    assert not scans, details
