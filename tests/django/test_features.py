"""The features beyond DEP 0014, through Django's API and a real worker (``litetasks.testing``):
retries with back-off, manual retry, completion hooks, unique tasks, ``enqueue_many``,
``enqueue_on_commit``, cancelling READY tasks, and result expiry."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest
from django.db import transaction
from django.test import override_settings

import litetasks
from litetasks import Call, enqueue_many, enqueue_on_commit
from litetasks._django.compat import (
    FRAMEWORK,
    InvalidTask,
    TaskResultStatus,
    task_enqueued,
    task_finished,
)
from litetasks._runtime.janitor import Pruner
from litetasks._store.records import JobState
from litetasks._store.store import CancelResult
from litetasks.testing import drain
from tests import feature_tasks, tasks
from tests.harness import wait_for


def rows(queue_path: Path, task: Any) -> list[tuple[str, str, str]]:
    """(job_id, state, args) of every row of ``task`` in the queue file, oldest first."""
    with apsw.Connection(str(queue_path)) as db:
        if not db.execute("SELECT 1 FROM sqlite_schema WHERE name = 'jobs'").fetchone():
            return []  # the queue file was never opened: nothing was ever enqueued
        return [
            (str(i), str(s), str(a))
            for i, s, a in db.execute(
                "SELECT job_id, state, args FROM jobs WHERE task_path = ? ORDER BY seq",
                (task.module_path,),
            )
        ]


@pytest.fixture
def folder(tmp_path: Path) -> str:
    marks = tmp_path / "marks"
    marks.mkdir()
    return str(marks)


def _collected(signal: Any) -> Iterator[list[Any]]:
    """The task results ``signal`` sends while the test runs."""
    seen: list[Any] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(task_result)

    signal.connect(receiver)
    yield seen
    signal.disconnect(receiver)


@pytest.fixture
def finished_signals() -> Iterator[list[Any]]:
    yield from _collected(task_finished)


@pytest.fixture
def enqueued_signals() -> Iterator[list[Any]]:
    yield from _collected(task_enqueued)


# -- retries -------------------------------------------------------------------------------------


def test_a_task_that_fails_twice_succeeds_on_its_third_attempt(backend, folder, finished_signals):
    result = feature_tasks.flaky.enqueue(folder, 2)
    drain()
    result.refresh()

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 3
    assert len(result.worker_ids) == 3
    assert [e.exception_class_path for e in result.errors] == ["builtins.ConnectionError"] * 2
    assert "attempt 1 failed" in result.errors[0].traceback
    # Only the end of the task is signalled: its failed attempts were not the end.
    assert [r.status for r in finished_signals] == [TaskResultStatus.SUCCESSFUL]


def test_retries_stop_at_max_attempts(backend, folder, finished_signals):
    result = feature_tasks.flaky.enqueue(folder, 5)
    drain()
    result.refresh()

    assert result.status == TaskResultStatus.FAILED
    assert len(result.worker_ids) == 3 == len(result.errors)
    assert len(list(Path(folder).iterdir())) == 3
    assert [r.status for r in finished_signals] == [TaskResultStatus.FAILED]


def test_a_failed_attempt_is_ready_again_after_its_backoff(backend, folder):
    result = feature_tasks.slow_retry.enqueue(folder)
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.READY  # waiting out its 0.3 s back-off
    assert len(result.errors) == 1

    def finished() -> bool:
        drain()
        result.refresh()
        return result.is_finished

    wait_for(finished, timeout_s=10)
    assert result.status == TaskResultStatus.SUCCESSFUL
    job = backend.store.get(result.id)
    attempts = sorted(p.stat().st_mtime for p in Path(folder).iterdir())
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.29 for gap in gaps), gaps
    assert job.attempts == 3


def test_the_backoff_sees_the_exception_and_the_attempt_and_none_stops_retrying(backend, folder):
    feature_tasks.BACKOFF_CALLS.clear()
    value = feature_tasks.fails_with.enqueue(folder, "value")
    drain()
    value.refresh()
    assert value.status == TaskResultStatus.FAILED
    assert len(value.errors) == 5
    calls = list(feature_tasks.BACKOFF_CALLS)
    assert calls == [("ValueError", n) for n in range(1, 5)]

    feature_tasks.BACKOFF_CALLS.clear()
    key = feature_tasks.fails_with.enqueue(folder, "key")
    drain()
    key.refresh()
    assert key.status == TaskResultStatus.FAILED
    assert len(key.errors) == 1
    assert feature_tasks.BACKOFF_CALLS == [("KeyError", 1)]


def test_no_retry_on_and_retry_on_choose_which_exceptions_are_retried(backend, folder):
    never = feature_tasks.fails_with_permission.enqueue(folder)
    other = feature_tasks.fails_with_type_error.enqueue(folder)
    drain()
    never.refresh()
    other.refresh()
    assert (never.status, len(never.errors)) == (TaskResultStatus.FAILED, 1)
    assert (other.status, len(other.errors)) == (TaskResultStatus.FAILED, 1)


def test_a_task_without_options_is_not_retried(backend):
    result = tasks.fail_value_error.enqueue()
    drain()
    result.refresh()
    assert (result.status, len(result.errors)) == (TaskResultStatus.FAILED, 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts of"),
        ({"max_attempts": "3"}, "max_attempts of"),
        ({"backoff": 5}, "backoff of"),
        ({"retry_on": (ValueError, "KeyError")}, "retry_on of"),
        ({"timeout": -1}, "timeout of"),
        ({"timeout": True}, "timeout of"),
        ({"unique": "yes"}, "unique of"),
        ({"on_success": print}, "on_success of"),
    ],
)
def test_bad_task_options_are_refused_with_a_clear_error(backend, options, message):
    with pytest.raises(InvalidTask, match=message):
        tasks.noop.using(priority=0).__class__(func=tasks.noop.func, **options)


def test_a_single_exception_class_is_accepted_for_retry_on(backend):
    task = feature_tasks.flaky.__class__(func=feature_tasks.flaky.func, retry_on=KeyError)
    assert task.retry_on == (KeyError,)


# -- manual retry --------------------------------------------------------------------------------


def test_a_manual_retry_gives_an_exhausted_task_a_fresh_attempt_budget(backend, folder):
    result = feature_tasks.always_fails.enqueue(folder)
    drain()
    result.refresh()
    assert (result.status, len(result.worker_ids)) == (TaskResultStatus.FAILED, 2)

    assert backend.retry([result.id]) == {result.id: "retried"}
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert result.finished_at is None

    drain()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert len(result.worker_ids) == 4 == len(result.errors)  # two more attempts, history kept


def test_retry_leaves_tasks_that_did_not_fail_alone(backend):
    done = tasks.noop.enqueue()
    waiting = tasks.noop.enqueue()
    drain()
    pending = tasks.noop.enqueue()

    outcome = backend.retry([done.id, pending.id, "0" * 32])

    assert outcome == {done.id: "not failed", pending.id: "not failed", "0" * 32: "not found"}
    assert backend.get_result(done.id).status == TaskResultStatus.SUCCESSFUL
    del waiting


# -- hooks ---------------------------------------------------------------------------------------


def test_a_success_hook_runs_with_the_finished_tasks_id(backend, queue_path):
    result = feature_tasks.with_success_hook.enqueue(7)
    drain()

    hooks = rows(queue_path, feature_tasks.hook_record)
    assert len(hooks) == 1
    hook_id, state, args = hooks[0]
    assert (state, args) == ("SUCCESSFUL", f'["{result.id}"]')
    assert backend.get_result(hook_id).return_value == result.id


def test_failure_hooks_fire_once_at_the_end_never_for_a_retried_attempt(
    backend, queue_path, folder
):
    result = feature_tasks.with_failure_hooks.enqueue(folder)
    drain()
    result.refresh()
    assert (result.status, len(result.errors)) == (TaskResultStatus.FAILED, 2)

    hooks = rows(queue_path, feature_tasks.hook_record)
    # on_failure and on_finish: one each, for the final failure only.
    assert [(state, args) for _, state, args in hooks] == [
        ("SUCCESSFUL", f'["{result.id}"]'),
        ("SUCCESSFUL", f'["{result.id}"]'),
    ]


def test_a_success_does_not_fire_failure_hooks(backend, queue_path, folder):
    result = feature_tasks.with_success_hook.enqueue(1)
    drain()
    assert backend.get_result(result.id).status == TaskResultStatus.SUCCESSFUL
    assert len(rows(queue_path, feature_tasks.hook_record)) == 1  # on_success only


def test_cancelling_a_ready_task_fires_its_failure_hooks(backend, queue_path, folder):
    result = feature_tasks.with_failure_hooks.enqueue(folder)
    assert backend.cancel([result.id]) == {result.id: CancelResult.CANCELLED}
    drain()
    assert len(rows(queue_path, feature_tasks.hook_record)) == 2
    assert list(Path(folder).iterdir()) == []  # the task itself never ran


def test_a_hook_on_another_backend_is_refused(lite_settings):
    immediate = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
    with override_settings(TASKS={**lite_settings, "other": {"BACKEND": immediate}}):
        elsewhere = feature_tasks.hook_record.using(backend="other")
        with pytest.raises(InvalidTask, match="hooks are enqueued in the same queue file"):
            tasks.noop.__class__(func=tasks.noop.func, on_success=elsewhere)


# -- cancel --------------------------------------------------------------------------------------


def test_a_cancelled_ready_task_never_runs_and_is_failed_with_task_cancelled(backend, folder):
    result = feature_tasks.flaky.enqueue(folder, 0)
    other = tasks.noop.enqueue()

    outcome = backend.cancel([result.id, other.id, "f" * 32])
    assert outcome == {
        result.id: CancelResult.CANCELLED,
        other.id: CancelResult.CANCELLED,
        "f" * 32: CancelResult.NOT_FOUND,
    }
    assert drain() == 0
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in result.errors] == ["litetasks.exceptions.TaskCancelled"]
    assert result.worker_ids == []
    assert list(Path(folder).iterdir()) == []
    assert backend.cancel([result.id]) == {result.id: CancelResult.FINISHED}


# -- unique --------------------------------------------------------------------------------------


def test_a_unique_task_enqueued_twice_while_ready_is_stored_once(
    backend, queue_path, enqueued_signals
):
    first = feature_tasks.unique_by_arguments.enqueue(1, b=2)
    twin = feature_tasks.unique_by_arguments.enqueue(1, b=2)
    other = feature_tasks.unique_by_arguments.enqueue(2, b=1)

    assert twin.id == first.id
    assert twin.status == TaskResultStatus.READY
    assert other.id != first.id
    assert len(rows(queue_path, feature_tasks.unique_by_arguments)) == 2
    assert [r.id for r in enqueued_signals] == [first.id, other.id]  # the twin was not enqueued


def test_a_unique_task_can_be_enqueued_again_once_it_finished(backend, queue_path):
    first = feature_tasks.unique_by_arguments.enqueue(1)
    drain()
    again = feature_tasks.unique_by_arguments.enqueue(1)

    assert again.id != first.id
    assert [s for _, s, _ in rows(queue_path, feature_tasks.unique_by_arguments)] == [
        "SUCCESSFUL",
        "READY",
    ]


def test_a_unique_key_function_decides_what_counts_as_a_twin(backend, queue_path):
    first = feature_tasks.unique_by_account.enqueue(5, note="a")
    twin = feature_tasks.unique_by_account.enqueue(5, note="b")
    other = feature_tasks.unique_by_account.enqueue(6, note="a")

    assert twin.id == first.id
    assert twin.kwargs == {"note": "a"}  # the stored task's arguments, not the twin's
    assert other.id != first.id


def test_unique_tasks_of_one_enqueue_many_are_deduplicated(backend, queue_path):
    results = enqueue_many(feature_tasks.unique_by_arguments, [(1,), (1,), (2,)])
    assert results[0].id == results[1].id != results[2].id
    assert len(rows(queue_path, feature_tasks.unique_by_arguments)) == 2


# -- enqueue_many --------------------------------------------------------------------------------


def test_enqueue_many_stores_every_call_and_signals_each(backend, enqueued_signals):
    results = enqueue_many(tasks.echo, [(1, 2), {"x": 3}, Call(4, y=5), []])

    assert [r.status for r in results] == [TaskResultStatus.READY] * 4
    assert len({r.id for r in results}) == 4
    assert [r.id for r in enqueued_signals] == [r.id for r in results]
    drain()
    values = [backend.get_result(r.id).return_value for r in results]
    assert values == [
        {"args": [1, 2], "kwargs": {}},
        {"args": [], "kwargs": {"x": 3}},
        {"args": [4], "kwargs": {"y": 5}},
        {"args": [], "kwargs": {}},
    ]


def test_enqueue_many_is_all_or_nothing_on_bad_input(backend, queue_path, enqueued_signals):
    with pytest.raises(TypeError):
        enqueue_many(tasks.echo, [(1,), (object(),), (3,)])
    with pytest.raises(TypeError, match="enqueue_many must be a tuple"):
        enqueue_many(tasks.echo, [(1,), 2])
    assert rows(queue_path, tasks.echo) == []
    assert enqueued_signals == []


def test_enqueue_many_of_nothing_returns_nothing(backend):
    assert enqueue_many(tasks.noop, []) == []


def test_enqueue_many_of_ten_thousand_tasks_is_one_transaction(backend, queue_path):
    results = enqueue_many(tasks.add, ((n, n) for n in range(10_000)))
    assert len(results) == 10_000
    with apsw.Connection(str(queue_path)) as db:
        stamps = {t for (t,) in db.execute("SELECT DISTINCT enqueued_at FROM jobs")}
    assert len(stamps) == 1  # one transaction: one enqueue time


# -- enqueue_on_commit ---------------------------------------------------------------------------


def test_enqueue_on_commit_waits_for_the_commit(backend, queue_path):
    with transaction.atomic():
        enqueue_on_commit(tasks.add, 1, 2)
        assert rows(queue_path, tasks.add) == []  # no worker can see it yet
    assert [s for _, s, _ in rows(queue_path, tasks.add)] == ["READY"]


def test_enqueue_on_commit_enqueues_nothing_on_rollback(backend, queue_path):
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        enqueue_on_commit(tasks.add, 1, 2)
        raise Rollback
    assert rows(queue_path, tasks.add) == []


def test_enqueue_on_commit_checks_arguments_inside_the_transaction(backend, queue_path):
    with pytest.raises(TypeError), transaction.atomic():
        enqueue_on_commit(tasks.echo, object())
    assert rows(queue_path, tasks.echo) == []


def test_enqueue_on_commit_outside_a_transaction_enqueues_at_once(backend, queue_path):
    enqueue_on_commit(tasks.add, 1, 2)
    assert len(rows(queue_path, tasks.add)) == 1


def test_an_enqueue_failing_after_the_commit_is_raised_and_logged(backend, caplog, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> None:
        raise litetasks.StoreError("disk full")

    monkeypatch.setattr(type(backend), "enqueue", broken)
    with pytest.raises(litetasks.StoreError), transaction.atomic():
        enqueue_on_commit(tasks.add, 1, 2)
    assert "after the transaction committed failed" in caplog.text


# -- result expiry -------------------------------------------------------------------------------


def test_prune_deletes_old_finished_results_and_never_ready_or_running(backend, queue_path):
    done = [tasks.noop.enqueue() for _ in range(5)]
    failed = tasks.fail_value_error.enqueue()
    drain()
    waiting = tasks.noop.enqueue()
    running = tasks.noop.enqueue()
    [claimed] = backend.store.claim("someone", limit=1)
    assert claimed.job_id == waiting.id
    del running

    time.sleep(0.01)
    assert backend.prune(older_than=timedelta(0), statuses=["SUCCESSFUL"]) == 5
    assert backend.get_result(failed.id).status == TaskResultStatus.FAILED
    assert backend.prune(older_than=timedelta(0)) == 1
    assert {s for _, s, _ in rows(queue_path, tasks.noop)} == {"READY", "RUNNING"}
    assert backend.prune(older_than=timedelta(hours=1)) == 0
    del done


def test_prune_of_recent_results_keeps_them(backend):
    result = tasks.noop.enqueue()
    drain()
    assert backend.prune(older_than=timedelta(days=1)) == 0
    assert backend.get_result(result.id).status == TaskResultStatus.SUCCESSFUL


def test_the_background_pruner_works_through_the_file_a_window_at_a_time(backend, monkeypatch):
    monkeypatch.setattr("litetasks._runtime.janitor.PRUNE_BATCH", 7)
    monkeypatch.setattr("litetasks._runtime.janitor.PRUNE_WINDOWS_PER_TICK", 2)
    enqueue_many(tasks.noop, [()] * 40)
    drain()
    keep = tasks.noop.enqueue()
    time.sleep(0.01)
    pruner = Pruner(ttl_s=0.001, interval_s=0)

    first = pruner.tick(backend.store)
    assert first == 14  # two windows of seven
    total = first
    while total < 40:
        pruner._next = 0  # the next tick is due (normally after a second)
        step = pruner.tick(backend.store)
        assert 0 < step <= 14
        total += step
    assert total == 40
    assert backend.get_result(keep.id).status == TaskResultStatus.READY


def test_results_ttl_none_keeps_results(backend):
    pruner = Pruner(ttl_s=None, interval_s=0)
    tasks.noop.enqueue()
    drain()
    assert pruner.tick(backend.store) == 0


def test_store_prune_refuses_live_states(backend):
    with pytest.raises(ValueError, match="Only SUCCESSFUL and FAILED"):
        backend.store.prune(finished_before_us=0, states=[JobState.READY])


# -- back-off policies -----------------------------------------------------------------------------


class _Attempt:
    def __init__(self, attempt: int) -> None:
        self.worker_ids = ["w"] * attempt


def test_exponential_backoff_doubles_up_to_its_cap_and_jitter_only_shortens():
    plain = litetasks.exponential(base=1, factor=2, cap=10, jitter=0)
    assert [plain(ValueError(), _Attempt(n)) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    jittered = litetasks.exponential(base=4, jitter=0.5)
    delays = [jittered(ValueError(), _Attempt(1)) for _ in range(200)]
    assert all(2 <= d <= 4 for d in delays)
    assert len(set(delays)) > 100  # really random
    assert litetasks.fixed(7)(ValueError(), _Attempt(3)) == 7


@pytest.mark.parametrize(
    "make",
    [
        lambda: litetasks.exponential(factor=0.5),
        lambda: litetasks.exponential(jitter=2),
        lambda: litetasks.fixed(-1),
    ],
)
def test_bad_backoff_parameters_are_refused(make):
    with pytest.raises(ValueError, match="needs"):
        make()


def test_tasks_with_options_compare_equal_and_pickle(backend):
    import pickle

    same = feature_tasks.flaky.__class__(
        func=feature_tasks.flaky.func, max_attempts=3, backoff=litetasks.fixed(0)
    )
    assert same == feature_tasks.flaky
    assert hash(same) == hash(feature_tasks.flaky)
    if FRAMEWORK == "django.tasks":  # Django 6.1 pickles tasks by module path; the backport not
        assert pickle.loads(pickle.dumps(feature_tasks.flaky)) == feature_tasks.flaky
