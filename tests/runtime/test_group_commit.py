"""Group commit: a worker writes many outcomes per transaction, yet none waits for long."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from litetasks._django.compat import TaskResultStatus
from litetasks._runtime.supervisor import build_pool
from tests import tasks
from tests.harness import wait_for


def test_outcomes_are_written_while_a_long_task_runs_behind_them(
    backend: Any, tmp_path: Path
) -> None:
    # One thread, a deep prefetch: ten quick tasks, a slow one, and eighty more queued behind
    # it. The quick tasks' outcomes must not wait for the slow task (nor for the executor to
    # run short of work): the group's time limit writes them.
    quick = [tasks.noop.enqueue() for _ in range(10)]
    marker = tmp_path / "slow.started"
    slow = tasks.write_pid_and_sleep.enqueue(str(marker), 3.0)
    behind = [tasks.noop.enqueue() for _ in range(80)]
    config = dataclasses.replace(backend.config.worker, threads=1, processes=1, prefetch=100)
    pool = build_pool(backend, config)
    runner = threading.Thread(target=pool.run, daemon=True)
    runner.start()
    try:
        wait_for(marker.exists, timeout_s=10, what="the slow task to start")
        started = time.monotonic()

        def quick_ones_recorded() -> bool:
            return all(
                backend.get_result(r.id).status == TaskResultStatus.SUCCESSFUL for r in quick
            )

        wait_for(quick_ones_recorded, timeout_s=2.5, interval_s=0.01, what="quick outcomes")
        assert time.monotonic() - started < 1.0
        assert backend.get_result(slow.id).status == TaskResultStatus.RUNNING
        # Claimed ahead, not run: the slow task is still in the way.
        assert {backend.get_result(r.id).status for r in behind} == {TaskResultStatus.RUNNING}
    finally:
        pool.stop(force=True)
        runner.join(10)
    assert not runner.is_alive()
    # Stopped mid-slow-task: the queued ones went back to READY, attempt not counted.
    for result in behind:
        stored = backend.get_result(result.id)
        assert (stored.status, stored.attempts) == (TaskResultStatus.READY, 0)
