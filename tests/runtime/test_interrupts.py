"""Timeouts and cancelling running tasks, with real workers: supervised processes (which replace
a worker whose task ignores its interrupt) and the in-process thread pool (which cannot)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from litetasks._django.compat import TaskResultStatus, task_finished
from litetasks._runtime.pool import WorkerPool
from litetasks._runtime.supervisor import build_pool
from litetasks._store.records import JobState
from litetasks._store.store import CancelResult
from tests import feature_tasks
from tests.harness import FAST, Pool, report, stop, wait_for

pytestmark = pytest.mark.slow


QUICK = {**FAST, "interrupt_grace_s": 0.5}
TIMEOUT = "litetasks.exceptions.TaskTimeout"
CANCELLED = "litetasks.exceptions.TaskCancelled"


def finished(result: Any, timeout_s: float = 20) -> Any:
    def done() -> bool:
        result.refresh()
        return result.is_finished

    wait_for(done, timeout_s=timeout_s, what=f"task {result.id} to finish")
    return result


def running(result: Any, timeout_s: float = 20) -> None:
    def started() -> bool:
        result.refresh()
        return result.status == TaskResultStatus.RUNNING

    wait_for(started, timeout_s=timeout_s, interval_s=0.01, what=f"task {result.id} to start")


def started(folder: Path, timeout_s: float = 20) -> None:
    """Wait until the task body runs (RUNNING is set at the claim, before it starts)."""
    wait_for(lambda: list(folder.glob("attempt-*")), timeout_s=timeout_s, interval_s=0.01)


def error_paths(result: Any) -> list[str]:
    return [e.exception_class_path for e in result.errors]


@pytest.fixture
def thread_pool(backend: Any) -> Iterator[Callable[..., WorkerPool]]:
    """Return ``start(**config)``: an in-process pool (as under runserver) on a thread."""
    started: list[tuple[WorkerPool, threading.Thread]] = []

    def start(**config: Any) -> WorkerPool:
        options = {"interrupt_grace_s": 0.5, **config}
        settings = dataclasses.replace(backend.config.worker, **options)
        pool = build_pool(backend, settings)
        thread = threading.Thread(target=pool.run, daemon=True)
        thread.start()
        started.append((pool, thread))
        return pool

    yield start
    for pool, thread in started:
        pool.stop(force=True)
        thread.join(10)


# -- timeouts in worker processes ---------------------------------------------------------------


def test_a_task_running_past_its_timeout_is_failed_with_task_timeout(
    open_pool: Callable[..., Pool],
) -> None:
    pool = open_pool(**QUICK)
    worker = pool.start()
    pool.children(1)
    began = time.monotonic()

    result = finished(feature_tasks.spins.enqueue(30))

    assert result.status == TaskResultStatus.FAILED
    assert error_paths(result) == [TIMEOUT]
    assert "longer than its timeout of 0.5 s" in result.errors[0].traceback
    assert result.finished_at is not None and result.started_at is not None
    report(
        "timeout 0.5 s: start to FAILED", (result.finished_at - result.started_at).total_seconds()
    )
    assert time.monotonic() - began < 10  # not the 30 s it wanted
    assert stop(worker) == 0


def test_a_timed_out_task_is_retried_while_attempts_remain(
    open_pool: Callable[..., Pool], tmp_path: Path
) -> None:
    pool = open_pool(**QUICK)
    worker = pool.start()
    pool.children(1)

    result = finished(feature_tasks.spins_twice.enqueue(str(tmp_path), 30))

    assert result.status == TaskResultStatus.FAILED
    assert error_paths(result) == [TIMEOUT, TIMEOUT]
    assert len(result.worker_ids) == 2
    assert len(list(tmp_path.glob("attempt-*"))) == 2
    assert stop(worker) == 0


def test_a_task_blocked_in_c_past_its_timeout_gets_its_process_replaced_and_nothing_is_lost(
    open_pool: Callable[..., Pool],
) -> None:
    pool = open_pool(**QUICK)
    worker = pool.start(threads=2)
    [first_pid] = pool.children(1)
    other = pool.enqueue("other", sleep_s=3.0)  # shares the process with the stuck task
    running(pool.backend.get_result(other))

    stuck = finished(feature_tasks.sleeps_in_c.enqueue(60))

    assert stuck.status == TaskResultStatus.FAILED
    assert error_paths(stuck) == [TIMEOUT]
    assert stuck.finished_at is not None and stuck.started_at is not None
    report(
        "timeout 0.5 s + grace 0.5 s, blocked in C: start to FAILED",
        (stuck.finished_at - stuck.started_at).total_seconds(),
    )
    # Replaced: the stuck process records the task, then exits; a fresh one registers.
    wait_for(
        lambda: [w.pid for w in pool.store.get_workers() if w.pid != first_pid],
        timeout_s=15,
        what="a replacement worker process",
    )
    # The other task was put back (its attempt not counted) and ran in the new process.
    job = pool.wait_state(other, JobState.SUCCESSFUL)
    assert job.attempts == 1
    assert pool.started()["other"] == 2
    assert stop(worker) == 0


def test_an_async_task_past_its_timeout_is_cancelled(open_pool: Callable[..., Pool]) -> None:
    pool = open_pool(**QUICK)
    worker = pool.start()
    pool.children(1)

    result = finished(feature_tasks.sleeps_async.enqueue(30))

    assert result.status == TaskResultStatus.FAILED
    assert error_paths(result) == [TIMEOUT]
    fast = finished(feature_tasks.sleeps_async.enqueue(0.01))
    assert fast.status == TaskResultStatus.SUCCESSFUL
    assert stop(worker) == 0


# -- cancelling running tasks ------------------------------------------------------------------


def test_cancelling_a_running_task_in_a_worker_process_fails_it(
    open_pool: Callable[..., Pool], tmp_path: Path
) -> None:
    pool = open_pool(**QUICK)
    worker = pool.start()
    pool.children(1)
    result = feature_tasks.spins_until_cancelled.enqueue(str(tmp_path), 60)
    started(tmp_path)

    began = time.monotonic()
    assert pool.backend.cancel([result.id]) == {result.id: CancelResult.CANCELLING}
    finished(result)

    report("cancel of a running task to FAILED", time.monotonic() - began)
    assert time.monotonic() - began < 5
    assert result.status == TaskResultStatus.FAILED
    assert error_paths(result) == [CANCELLED]
    assert len(list(tmp_path.glob("attempt-*"))) == 1  # never retried
    assert stop(worker) == 0


def test_cancelling_a_running_coroutine_fails_it(open_pool: Callable[..., Pool]) -> None:
    pool = open_pool(**QUICK)
    worker = pool.start()
    pool.children(1)
    result = feature_tasks.sleeps_async_until_cancelled.enqueue(60)
    running(result)

    pool.backend.cancel([result.id])

    assert finished(result).status == TaskResultStatus.FAILED
    assert error_paths(result) == [CANCELLED]
    assert stop(worker) == 0


# -- the in-process thread pool ----------------------------------------------------------------


def test_the_thread_pool_interrupts_a_task_past_its_timeout(thread_pool, backend) -> None:
    seen: list[Any] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append(task_result.status)

    task_finished.connect(receiver)
    try:
        thread_pool()
        result = finished(feature_tasks.spins.enqueue(30))
        wait_for(lambda: seen, timeout_s=10, what="task_finished")  # sent after recording
    finally:
        task_finished.disconnect(receiver)
    assert error_paths(result) == [TIMEOUT]
    assert seen == [TaskResultStatus.FAILED]


def test_the_thread_pool_cancels_a_running_task(thread_pool, backend, tmp_path: Path) -> None:
    thread_pool()
    result = feature_tasks.spins_until_cancelled.enqueue(str(tmp_path), 60)
    started(tmp_path)
    backend.cancel([result.id])
    assert finished(result).status == TaskResultStatus.FAILED
    assert error_paths(result) == [CANCELLED]


def test_the_thread_pool_logs_a_task_that_ignores_its_timeout_and_lets_it_end(
    thread_pool, backend, caplog
) -> None:
    thread_pool()
    result = finished(feature_tasks.swallows_everything.enqueue(2.0))
    assert "ignored its interrupt (TaskTimeout)" in caplog.text
    assert "cannot be killed in an in-process pool" in caplog.text
    assert result.status == TaskResultStatus.SUCCESSFUL  # it did end, on its own


def test_a_task_that_ends_as_it_is_cancelled_is_settled_exactly_once(
    thread_pool, backend, tmp_path: Path
) -> None:
    thread_pool(threads=2)
    results = []
    for n in range(10):
        # The folder exists before the task is enqueued: a free thread may start it at once.
        (tmp_path / str(n)).mkdir()
        result = feature_tasks.spins_until_cancelled.enqueue(str(tmp_path / str(n)), 0.05 * n)
        results.append(result)
    for result in results:
        time.sleep(0.03)
        backend.cancel([result.id])
    for result in results:
        finished(result)
        assert len(result.worker_ids) <= 1
        assert result.status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
        if result.status == TaskResultStatus.SUCCESSFUL:
            assert result.errors == []
        else:
            assert error_paths(result) == [CANCELLED]
