"""A task a worker does not find in its code goes back to READY for a worker that has it.

Two projects on one queue file destroyed each other's tasks (``TaskNotAllowed``), and a task
added to the code after the pool started failed for good ("is not a task") although it was
decorated. Now the worker puts such a task back, its attempt not counted, after each delay of
``OPTIONS["not_found_delays"]``, and fails it after the last with a ``TaskNotFound`` error that
says what happened and what to do. Here in one process, with delays of 0 (due again at once);
tests/processes/test_not_found_pool.py runs real pools of two projects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings

from litetasks._django.backend import SQLiteBackend
from litetasks._django.compat import InvalidTaskBackend, TaskResultStatus, task_backends
from litetasks._store.enqueueing import new_job_id
from litetasks._store.records import JobState, NewJob
from litetasks.testing import drain
from tests import tasks

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task  # type: ignore[no-redef]

NOT_FOUND = "litetasks.exceptions.TaskNotFound"


@pytest.fixture
def with_delays(queue_path: Any) -> Iterator[Callable[[list[float]], SQLiteBackend]]:
    """Return ``configure(delays)``: the default backend with OPTIONS["not_found_delays"]."""
    managers: list[Any] = []

    def configure(delays: list[float]) -> SQLiteBackend:
        options = {"path": str(queue_path), "not_found_delays": delays}
        manager = override_settings(
            TASKS={"default": {"BACKEND": "litetasks.backend.SQLiteBackend", "OPTIONS": options}}
        )
        manager.enable()
        managers.append(manager)
        return task_backends["default"]  # type: ignore[no-any-return]

    yield configure
    for manager in reversed(managers):
        manager.disable()


def insert(backend: SQLiteBackend, task_path: str) -> str:
    """A row another process (with other code) enqueued: written straight into the file."""
    job_id = new_job_id()
    backend.store.enqueue([NewJob(job_id=job_id, task_path=task_path)])
    return job_id


def test_a_task_not_found_is_put_back_uncounted_then_failed_after_the_last_delay(
    with_delays: Callable[[list[float]], SQLiteBackend],
) -> None:
    backend = with_delays([0, 0])
    job_id = insert(backend, "tests.tasks.no_such_name")
    valid = tasks.add.using(priority=-100).enqueue(1, 2)

    # Put back twice (due again at once), then failed: three claims, and the valid task.
    assert drain() == 4

    job = backend.store.get(job_id)
    assert job.state is JobState.FAILED
    assert (job.attempts, len(job.worker_ids), job.put_backs) == (1, 1, 2)
    assert job.first_put_back_at_us is not None
    [error] = job.errors
    assert error.exception_class_path == NOT_FOUND
    assert re.search(
        r"module 'tests\.tasks' has no 'no_such_name' \(tried 3 times by the workers over "
        r"\d+ s\)\. If it is new, restart the workers \(they load the code when they start\), "
        rf"then `litetasks retry {job_id}`\. If another project uses this queue file, give "
        r"each project its own file: one queue file belongs to one project\.",
        error.traceback,
    ), error.traceback
    valid.refresh()
    assert valid.return_value == 3


def test_a_put_back_task_is_ready_with_no_attempt_counted_until_its_delay_is_over(
    with_delays: Callable[[list[float]], SQLiteBackend],
) -> None:
    backend = with_delays([3600.0])
    job_id = insert(backend, "tests.tasks.no_such_name")

    assert drain() == 1
    job = backend.store.get(job_id)

    assert job.state is JobState.READY
    assert (job.attempts, job.worker_ids, job.errors, job.owner) == (0, (), (), None)
    assert (job.started_at_us, job.last_attempted_at_us, job.finished_at_us) == (None,) * 3
    assert job.put_backs == 1
    assert job.first_put_back_at_us is not None
    assert job.run_after_us is not None
    assert job.run_after_us - job.first_put_back_at_us >= 3600 * 10**6
    assert drain() == 0  # not due before its delay is over


def test_a_task_added_to_the_code_after_a_put_back_runs_once_the_worker_has_it(
    with_delays: Callable[[list[float]], SQLiteBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = with_delays([3600.0])
    job_id = insert(backend, "tests.tasks.added_later")
    assert drain() == 1  # put back: this code does not have it
    assert backend.store.get(job_id).put_backs == 1

    # New code, as a restarted worker would load it (here the loaded module gains the task),
    # and the put-back's delay over.
    monkeypatch.setattr(tasks, "added_later", task(tasks.add.func), raising=False)
    backend.store._db.execute(
        "UPDATE jobs SET args = '[20, 22]', run_after = enqueued_at, due_at = enqueued_at"
        " WHERE job_id = ?",
        (job_id,),
    )
    assert drain() == 1

    result = backend.get_result(job_id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42
    assert len(result.worker_ids) == 1  # the put-back was no attempt
    assert result.errors == []


def test_a_manual_retry_gives_a_task_not_found_a_fresh_set_of_put_backs(
    with_delays: Callable[[list[float]], SQLiteBackend],
) -> None:
    backend = with_delays([0])
    job_id = insert(backend, "tests.tasks.no_such_name")
    assert drain() == 2
    assert backend.store.get(job_id).state is JobState.FAILED

    assert backend.retry([job_id]) == {job_id: "retried"}
    assert (backend.store.get(job_id).put_backs, backend.store.get(job_id).attempts) == (0, 1)
    assert drain() == 2  # put back once more, then failed again

    job = backend.store.get(job_id)
    assert (job.state, job.attempts, job.put_backs) == (JobState.FAILED, 2, 1)
    assert [e.exception_class_path for e in job.errors] == [NOT_FOUND, NOT_FOUND]
    assert "(tried 2 times by the workers over" in job.errors[-1].traceback


def test_a_path_no_worker_imports_is_failed_at_once_without_put_backs(
    with_delays: Callable[[list[float]], SQLiteBackend],
) -> None:
    backend = with_delays([0, 0])
    ids = [insert(backend, path) for path in ("os.system", "litetasks.cli.main", "x.__main__.y")]

    assert drain() == 3

    for job_id in ids:
        job = backend.store.get(job_id)
        assert (job.state, job.put_backs) == (JobState.FAILED, 0)
        assert job.errors[-1].exception_class_path == "litetasks.exceptions.TaskNotAllowed"


@pytest.mark.parametrize("delays", [[-1], [float("inf")], ["1"], [True], 5, [0] * 101], ids=repr)
def test_bad_not_found_delays_are_refused(queue_path: Any, delays: Any) -> None:
    options = {"path": str(queue_path), "not_found_delays": delays}
    setting = {"default": {"BACKEND": "litetasks.backend.SQLiteBackend", "OPTIONS": options}}
    with override_settings(TASKS=setting), pytest.raises(InvalidTaskBackend) as refused:
        task_backends["default"].config  # noqa: B018 (bad OPTIONS raise at the first use)
    assert str(refused.value) == (
        "TASKS['default']['OPTIONS']['not_found_delays'] must be a list of at most 100 delays "
        f"in seconds (numbers, 0 or more) (got {delays!r})."
    )


def test_a_worker_leaves_tasks_it_did_not_find_to_other_workers_for_twice_the_delay(
    with_delays: Callable[[list[float]], SQLiteBackend], request: pytest.FixtureRequest
) -> None:
    from litetasks._runtime.execution import TaskRunner
    from litetasks._runtime.pool import WorkerPool
    from litetasks._store.config import WorkerConfig

    backend = with_delays([3600.0])
    first = insert(backend, "shop.tasks.send_receipt")
    second = insert(backend, "shop.tasks.send_receipt")
    own = tasks.add.using(priority=-100).enqueue(1, 2)
    runner = TaskRunner(backend, "w1")
    pool = WorkerPool(
        store_factory=lambda: backend.store,
        runner_factory=lambda worker_id, translate: runner,
        config=WorkerConfig(burst=True),
        worker_id="w1",
    )
    request.addfinalizer(pool.close)  # the interrupter's thread its first task started

    assert pool.run_once(backend.store)  # the first one: put back
    assert runner.not_here() == ["shop.tasks.send_receipt"]
    assert pool.run_once(backend.store)  # its own task, not the second one
    assert not pool.run_once(backend.store)  # the second one is left to other workers

    assert backend.store.get(first).put_backs == 1
    second_job = backend.store.get(second)
    assert (second_job.state, second_job.put_backs, second_job.attempts) == (JobState.READY, 0, 0)
    own.refresh()
    assert own.return_value == 3
    # Another worker (its claims skip nothing) takes it.
    assert [job.job_id for job in backend.store.claim("w2", limit=5)] == [second]


def test_a_worker_does_not_spin_on_due_tasks_it_leaves_to_other_workers(
    with_delays: Callable[[list[float]], SQLiteBackend], request: pytest.FixtureRequest
) -> None:
    from litetasks._runtime.execution import TaskRunner
    from litetasks._runtime.pool import WorkerPool
    from litetasks._store.config import WorkerConfig

    backend = with_delays([3600.0])
    insert(backend, "shop.tasks.send_receipt")
    runner = TaskRunner(backend, "w1")
    config = WorkerConfig(poll_interval_s=0.5)
    pool = WorkerPool(
        store_factory=lambda: backend.store,
        runner_factory=lambda worker_id, translate: runner,
        config=config,
        worker_id="w1",
    )
    request.addfinalizer(pool.close)  # the interrupter's thread its first task started
    assert pool.run_once(backend.store)  # put back; the worker leaves that task to others
    insert(backend, "shop.tasks.send_receipt")  # due now, but not for this worker

    assert not pool.run_once(backend.store)
    # It sleeps until its next fallback poll, not 0 s (which would claim nothing, forever).
    assert pool.wait_timeout(backend.store, idle=True) == config.poll_interval_s


def test_claims_that_skip_task_paths_read_no_more_than_the_ready_index(tmp_path: Any) -> None:
    from litetasks._store import sql
    from litetasks._store.store import Store

    with Store(tmp_path / "tasks.sqlite3") as store:
        for (queues, skips), statements in sql.CLAIMS.items():
            for statement in statements:
                names = re.findall(r":(\w+)", statement)
                bindings = {n: "[]" if n in ("queues", "skip") else 1 for n in names}
                plan = store._db.execute(f"EXPLAIN QUERY PLAN {statement}", bindings).fetchall()
                details = [str(row[3]) for row in plan]
                full_scans = [d for d in details if d.startswith("SCAN jobs") and "INDEX" not in d]
                assert full_scans == [], (queues, skips, details)
