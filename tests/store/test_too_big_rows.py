"""A stored row too big to claim fails by itself; the claim takes the other jobs, in order.

SQLite's length limit is lowered to 20 KB on the store's connection; rows are made as big as
an insert allows, so they fit but cannot take the worker id and times a claim adds.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from litetasks._store.records import ErrorRecord, Hook, JobState, NewJob, Outcome
from litetasks._store.store import Store
from litetasks.exceptions import StoreError

LIMIT = 20_000
WORKER = "w" * 100
TOO_BIG = "litetasks.exceptions.JobTooBig"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    def hook(connection: apsw.Connection) -> None:
        connection.limit(apsw.SQLITE_LIMIT_LENGTH, LIMIT)

    monkeypatch.setattr(apsw, "connection_hooks", [*apsw.connection_hooks, hook])
    with Store(tmp_path / "tasks.sqlite3") as opened:
        yield opened


def enqueue_full(store: Store, job_id: str, *, errors: int = 0, **fields: object) -> None:
    """Enqueue ``job_id`` with arguments as big as the row allows (less room for ``errors``)."""
    for spare in range(0, 2000, 10):
        args = json.dumps(["x" * (LIMIT - 300 - 600 * errors - spare)])
        with contextlib.suppress(StoreError):
            store.enqueue(
                [NewJob(job_id=job_id, task_path="tests.tasks.echo", args_json=args, **fields)]  # type: ignore[arg-type]
            )
            return
    raise AssertionError("no size fits")


def small(store: Store, job_id: str, priority: int = 0) -> None:
    store.enqueue([NewJob(job_id=job_id, task_path="tests.tasks.noop", priority=priority)])


def test_a_row_too_big_to_claim_fails_by_itself_and_the_batch_claims_the_rest_in_order(
    store: Store,
) -> None:
    small(store, "first", priority=2)
    enqueue_full(store, "big", priority=1)
    small(store, "second", priority=1)
    small(store, "third")

    claimed = store.claim(WORKER, limit=10)

    assert [job.job_id for job in claimed] == ["first", "second", "third"]
    big = store.get("big")
    assert (big.state, big.attempts, big.worker_ids, big.owner) == (JobState.FAILED, 0, (), None)
    assert (big.args_json, big.kwargs_json) == ("[]", "{}")
    [error] = big.errors
    assert error.exception_class_path == TOO_BIG
    assert "never ran" in error.traceback and "earlier attempt" not in error.traceback
    assert big.finished_at_us is not None
    assert store.claim(WORKER, limit=10) == []  # it stays failed
    assert store.integrity_check() == "ok"


def test_the_next_claim_of_a_batch_is_not_held_up_by_a_big_row_at_its_head(store: Store) -> None:
    enqueue_full(store, "big")
    small(store, "after")

    [job] = store.claim(WORKER, limit=1)

    assert job.job_id == "after"
    assert store.get("big").state == JobState.FAILED


def test_errors_of_earlier_attempts_make_way_too_when_the_arguments_are_not_enough(
    store: Store,
) -> None:
    store.enqueue([NewJob(job_id="big", task_path="tests.tasks.noop", max_attempts=3)])
    for attempt in (1, 2):
        store.claim("w", limit=1)
        error = ErrorRecord(exception_class_path="builtins.ValueError", traceback="boom")
        outcome = Outcome(
            job_id="big",
            worker_id="w",
            attempt=attempt,
            started_at_us=1,
            finished_at_us=2,
            error=error,
            retry_at_us=0,
        )
        assert store.record([outcome]) == [True]
    # Long tracebacks of both attempts fill the row (as when each was cut to fit).
    with contextlib.closing(apsw.Connection(str(store.path))) as raw:
        for size in range(LIMIT // 2, 0, -10):
            errors = json.dumps([{"exception_class_path": "builtins.ValueError",
                                  "traceback": "e" * size}] * 2)  # fmt: skip
            with contextlib.suppress(apsw.TooBigError):
                raw.execute("UPDATE jobs SET errors = ? WHERE job_id = 'big'", (errors,))
                break

    assert store.claim(WORKER, limit=1) == []

    big = store.get("big")
    assert (big.state, big.attempts, len(big.worker_ids)) == (JobState.FAILED, 2, 2)
    [error] = big.errors
    assert error.exception_class_path == TOO_BIG
    assert "the errors of its 2 earlier attempt(s)" in error.traceback


def test_a_too_big_job_that_fails_fires_its_failure_hooks(store: Store) -> None:
    hook = Hook(when="failure", task_path="tests.tasks.noop")
    enqueue_full(store, "big", hooks=(hook,))

    assert store.claim(WORKER, limit=5) == []  # the hook is READY once this claim commits

    [job] = store.claim(WORKER, limit=5)
    assert job.task_path == "tests.tasks.noop" and json.loads(job.args_json) == ["big"]
