"""Coroutine tasks run concurrently on one event loop per worker process, not one per thread."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from litetasks._django.compat import TaskResultStatus, task_finished
from litetasks._runtime.supervisor import build_pool
from tests import tasks


def _run_pool_until(backend: Any, done: threading.Event, threads: int) -> float:
    config = dataclasses.replace(backend.config.worker, threads=threads, processes=1)
    pool = build_pool(backend, config)
    runner = threading.Thread(target=pool.run, daemon=True)
    began = time.monotonic()
    runner.start()
    assert done.wait(30), "the tasks did not finish"
    elapsed = time.monotonic() - began
    pool.stop()
    runner.join(10)
    assert not runner.is_alive()
    return elapsed


def test_twenty_sleeping_coroutines_share_one_executor_thread(backend: Any) -> None:
    results = [tasks.async_sleep.enqueue(0.5) for _ in range(20)]
    finished: list[str] = []
    all_done = threading.Event()

    def on_finished(sender: type, task_result: Any, **kwargs: Any) -> None:
        finished.append(task_result.id)
        if len(finished) == len(results):
            all_done.set()

    task_finished.connect(on_finished)
    try:
        elapsed = _run_pool_until(backend, all_done, threads=1)
    finally:
        task_finished.disconnect(on_finished)
    # One at a time on the single executor thread would take 10 s.
    assert elapsed < 5, elapsed
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.attempts == 1
    starts = sorted(result.return_value for result in results)
    assert starts[-1] - starts[0] < 0.5  # all were sleeping at the same time
    assert sorted(finished) == sorted(r.id for r in results)


def test_a_failing_coroutine_is_recorded_like_a_failing_function(backend: Any) -> None:
    result = tasks.async_sleep.enqueue("not a number")
    done = threading.Event()

    def on_finished(sender: type, task_result: Any, **kwargs: Any) -> None:
        done.set()

    task_finished.connect(on_finished)
    try:
        _run_pool_until(backend, done, threads=1)
    finally:
        task_finished.disconnect(on_finished)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in result.errors] == ["builtins.TypeError"]
