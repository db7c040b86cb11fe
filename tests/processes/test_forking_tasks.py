"""A task that forks and returns in both processes: the parent's outcome is recorded, and the
child, a whole copy of the worker, ends at once instead of carrying on as a second worker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from litetasks._django.compat import TaskResultStatus
from tests import process_tasks, tasks
from tests.harness import (
    ProcessGroup,
    descendants,
    litetasks_argv,
    subprocess_env,
    wait_for,
)

pytestmark = pytest.mark.slow


def _is_running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited: it only waits for its parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _pids_by_role(path: Path) -> dict[str, int]:
    lines = path.read_text().splitlines() if path.exists() else []
    return {role: int(pid) for role, pid in (line.split() for line in lines)}


FORKING_TASKS = [
    process_tasks.fork_and_return,
    process_tasks.fork_and_raise_in_child,
    process_tasks.fork_and_return_async,
]


@pytest.mark.parametrize("task", FORKING_TASKS, ids=lambda t: t.name)
def test_a_worker_records_the_parents_outcome_and_ends_the_forked_child(
    backend: Any, procs: ProcessGroup, tmp_path: Path, task: Any
) -> None:
    side = tmp_path / "roles.txt"
    forking = task.enqueue(str(side))
    argv = litetasks_argv("run", "--processes", "1", "--threads", "2")
    pool = procs.start(argv, env=subprocess_env(tmp_path), cwd=tmp_path)

    wait_for(
        lambda: backend.get_result(forking.id).status == TaskResultStatus.SUCCESSFUL,
        timeout_s=20,
        what="the forking task to succeed",
    )
    roles = wait_for(
        lambda: len(found := _pids_by_role(side)) == 2 and found,
        timeout_s=10,
        what="both processes to write their line",
    )
    wait_for(lambda: not _is_running(roles["child"]), timeout_s=10, what="the child to end")
    result = backend.get_result(forking.id)
    assert result.return_value == roles["parent"], pool.output
    assert len(result.worker_ids) == 1
    after = tasks.add.enqueue(20, 22)
    wait_for(
        lambda: backend.get_result(after.id).status == TaskResultStatus.SUCCESSFUL,
        timeout_s=20,
        what="the worker to run the next task",
    )
    assert [pid for pid in descendants(pool.pid) if _is_running(pid)] == [roles["parent"]]
    pool.wait_for_line("in a process it forked", timeout_s=5)
    pool.send(signal.SIGTERM)
    assert pool.wait(timeout_s=15) == 0, pool.output


def test_drain_records_the_parents_outcome_and_ends_the_forked_child(tmp_path: Path) -> None:
    """``litetasks.testing.drain()`` (and the in-process pool) runs tasks in the calling
    process: a child that returned would go on running the caller's code."""
    side = tmp_path / "roles.txt"
    script = f"""
import json, os, django
django.setup()
from litetasks.testing import drain
from tests import process_tasks
result = process_tasks.fork_and_return.enqueue({str(side)!r})
ran = drain()
result.refresh()
print(json.dumps({{"ran": ran, "status": result.status, "value": result.return_value,
                  "pid": os.getpid()}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()  # printed by the caller only, not by a second copy
    printed = json.loads(line)
    roles = _pids_by_role(side)
    assert printed == {
        "ran": 1,
        "status": "SUCCESSFUL",
        "value": printed["pid"],
        "pid": roles["parent"],
    }
    wait_for(lambda: not _is_running(roles["child"]), timeout_s=10, what="the child to end")
    assert "in a process it forked" in done.stderr
