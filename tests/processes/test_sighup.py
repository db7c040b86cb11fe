"""SIGHUP (a closing terminal) stops ``litetasks run`` as SIGTERM does: running tasks finish."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from litetasks._django.compat import TaskResultStatus
from tests import tasks
from tests.harness import (
    ProcessGroup,
    Started,
    descendants,
    litetasks_argv,
    subprocess_env,
    wait_for,
)

pytestmark = pytest.mark.slow


def _task_pid(pid_file: Path) -> int:
    return wait_for(
        lambda: pid_file.exists() and pid_file.read_text() and int(pid_file.read_text()),
        timeout_s=15,
        what="the task to start",
    )


def _start(procs: ProcessGroup, tmp_path: Path, *args: str) -> Started:
    argv = litetasks_argv("run", "--processes", "1", "--threads", "1", "--grace", "30", *args)
    return procs.start(argv, env=subprocess_env(tmp_path), cwd=tmp_path)


@pytest.mark.parametrize("reload", [False, True], ids=["run", "run --reload"])
def test_sighup_stops_the_pool_as_sigterm_does_and_a_second_one_does_not_force_it(
    backend: Any, procs: ProcessGroup, tmp_path: Path, reload: bool
) -> None:
    pid_file = tmp_path / "task.pid"
    result = tasks.write_pid_and_sleep.enqueue(str(pid_file), 1.5)
    pool = _start(procs, tmp_path, *(["--reload"] if reload else []))
    task_pid = _task_pid(pid_file)

    pool.send(signal.SIGHUP)
    # The --reload watcher passes the stop on to its pool as a SIGTERM.
    pool.wait_for_line("Stopping on SIGTERM" if reload else "Stopping on SIGHUP", timeout_s=10)
    pool.send(signal.SIGHUP)  # a closing terminal can send two
    code = pool.wait(timeout_s=20)

    assert code == 0, pool.output
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL, pool.output
    assert result.return_value == task_pid
    assert result.finished_at - result.started_at >= timedelta(seconds=1.5)
    assert procs.survivors() == []
    assert backend.store.get_workers() == []


def test_sighup_to_a_worker_process_lets_its_task_finish_and_replaces_it(
    backend: Any, procs: ProcessGroup, tmp_path: Path
) -> None:
    pid_file = tmp_path / "task.pid"
    result = tasks.write_pid_and_sleep.enqueue(str(pid_file), 1.5)
    pool = _start(procs, tmp_path)
    worker = _task_pid(pid_file)

    os.kill(worker, signal.SIGHUP)
    wait_for(
        lambda: backend.get_result(result.id).status == TaskResultStatus.SUCCESSFUL,
        timeout_s=15,
        what="the task to finish",
    )
    replacement = wait_for(
        lambda: [pid for pid in descendants(pool.pid) if pid != worker],
        timeout_s=15,
        what="a new worker process",
    )
    after = tasks.add.enqueue(20, 22)
    wait_for(
        lambda: backend.get_result(after.id).status == TaskResultStatus.SUCCESSFUL,
        timeout_s=15,
        what="the new worker to run a task",
    )

    assert backend.get_result(after.id).return_value == 42
    assert len(replacement) == 1, pool.output
    pool.send(signal.SIGTERM)
    assert pool.wait(timeout_s=15) == 0, pool.output
