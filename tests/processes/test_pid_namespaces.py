"""``litetasks run`` in PID namespaces (containers): as PID 1, and two pools on one queue file.

Each pool runs under ``unshare --pid --fork --mount-proc``, so its supervisor is PID 1 of a new
namespace with its own ``/proc``, while the hostname and the kernel's boot id stay the host's:
what containers of one Kubernetes pod (or ``--uts=host``) sharing a volume look like.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from litetasks._django.compat import TaskResultStatus
from tests import process_tasks, tasks
from tests.harness import ProcessGroup, Started, litetasks_argv, subprocess_env, wait_for

WORKER_LOST = "litetasks.exceptions.WorkerLost"
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not _can_unshare(), reason="needs unshare(1) and the right to create PID namespaces"
    ),
]


def _stat(pid: int) -> list[str] | None:
    """Fields 3 onwards of ``/proc/<pid>/stat`` (state, ppid, ...), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    """The pids (as this test sees them) of ``pid``'s children, zombies included."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _workers(supervisor: int) -> list[int]:
    """The supervisor's live children, but for the orphaned ``sleep`` a task hands it."""
    return [
        child
        for child in _children(supervisor)
        if (_stat(child) or ["Z"])[0] != "Z" and not _command(child).startswith("sleep")
    ]


class Namespace:
    """``litetasks run`` as PID 1 of a new PID namespace."""

    def __init__(self, started: Started) -> None:
        self.started = started
        # unshare forks the namespace's PID 1 and waits for it.
        self.init_pid = wait_for(
            lambda: next(iter(_children(started.pid)), None),
            timeout_s=10,
            what="the namespace's first process",
        )

    def kill(self, signum: int) -> None:
        """Signal the supervisor (unshare itself does not forward signals)."""
        os.kill(self.init_pid, signum)


def start_in_namespace(
    procs: ProcessGroup, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Namespace:
    argv = [*UNSHARE, *litetasks_argv("run", *args)]
    return Namespace(procs.start(argv, env=env or subprocess_env(tmp_path), cwd=tmp_path))


# -- PID 1 -------------------------------------------------------------------------------------


def test_litetasks_run_as_pid_1_runs_tasks_reaps_orphans_and_stops_on_sigterm(
    backend: Any, procs: ProcessGroup, tmp_path: Path
) -> None:
    side = tmp_path / "ran.txt"
    results = [tasks.append_line.enqueue(str(side), f"task-{i}") for i in range(5)]
    orphaning = process_tasks.leave_orphan.enqueue(60)
    pool = start_in_namespace(procs, tmp_path, "--processes", "2", "--threads", "2")
    supervisor = pool.init_pid
    workers = wait_for(
        lambda: len(found := _workers(supervisor)) == 2 and found,
        timeout_s=20,
        what="two worker processes",
    )

    for result in [*results, orphaning]:
        wait_for(
            lambda result=result: (
                backend.get_result(result.id).status == TaskResultStatus.SUCCESSFUL
            ),
            timeout_s=30,
            what=f"task {result.id} to succeed",
        )
    # The orphaned sleep now belongs to the supervisor, PID 1 of the namespace ...
    orphan = wait_for(
        lambda: next((p for p in _children(supervisor) if _command(p) == "sleep 60 "), None),
        timeout_s=10,
        what="the orphaned sleep to be handed to the supervisor",
    )
    # ... which reaps it once it exits: no zombie is left behind.
    os.kill(orphan, signal.SIGTERM)
    wait_for(lambda: _stat(orphan) is None, timeout_s=15, what="the orphan to be reaped")

    assert _workers(supervisor) == workers, pool.started.output
    assert "recycled" not in pool.started.output
    assert "exited with code" not in pool.started.output
    pool.kill(signal.SIGTERM)
    assert pool.started.wait(timeout_s=15) == 0, pool.started.output
    assert "Supervisor pid=1 stopped" in pool.started.output
    assert procs.survivors() == []
    assert backend.store.get_workers() == []
    assert sorted(line.split()[0] for line in side.read_text().splitlines()) == [
        f"task-{i}" for i in range(5)
    ]


# -- two pools, two namespaces, one queue file --------------------------------------------------


def _short_lease_env(tmp_path: Path, lease_s: float) -> dict[str, str]:
    """An environment whose settings give the queue file a short lease."""
    settings = tmp_path / "short_lease_settings.py"
    options = f"**TASKS['default']['OPTIONS'], 'lease_s': {lease_s!r}, 'heartbeat_s': 0.5"
    settings.write_text(
        "from tests.settings import *\n"
        f"TASKS = {{'default': {{**TASKS['default'], 'OPTIONS': {{{options}}}}}}}\n"
    )
    env = subprocess_env(tmp_path, settings="short_lease_settings")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    return env


def _runs(path: Path) -> collections.Counter[str]:
    if not path.exists():
        return collections.Counter()
    return collections.Counter(line.split()[0] for line in path.read_text().splitlines())


def test_pools_in_two_pid_namespaces_neither_fail_nor_repeat_each_others_tasks(
    backend: Any, procs: ProcessGroup, tmp_path: Path
) -> None:
    lease_s = 6.0  # short, yet long enough for a heartbeat every 0.5 s on a loaded machine
    env = _short_lease_env(tmp_path, lease_s)
    side = tmp_path / "ran"
    once = [tasks.tracked.enqueue(str(side), f"once-{i}", 2.0) for i in range(4)]
    retried = [
        process_tasks.tracked_with_retries.enqueue(str(side), f"retried-{i}", 2.0) for i in range(4)
    ]
    first = start_in_namespace(
        procs,
        tmp_path,
        "--processes",
        "2",
        "--threads",
        "2",
        "-q",
        "default",
        "-q",
        "emails",
        env=env,
    )
    started = Path(f"{side}.started")
    wait_for(lambda: len(_runs(started)) >= 3, timeout_s=30, what="the first pool to start tasks")
    second = start_in_namespace(
        procs, tmp_path, "--processes", "2", "--threads", "2", "-q", "default", env=env
    )

    def all_finished() -> bool:
        states = {backend.get_result(r.id).status for r in [*once, *retried]}
        return states <= {TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED}

    wait_for(all_finished, timeout_s=60, what="every task to finish")

    outputs = f"{first.started.output}\n----\n{second.started.output}"
    failed = {
        r.id: [e.exception_class_path for e in backend.get_result(r.id).errors]
        for r in [*once, *retried]
        if backend.get_result(r.id).status != TaskResultStatus.SUCCESSFUL
    }
    assert failed == {}, outputs
    assert _runs(started) == {r.args[1]: 1 for r in [*once, *retried]}, outputs
    assert not Path(f"{side}.concurrent").exists(), outputs
    assert all(len(backend.get_result(r.id).worker_ids) == 1 for r in [*once, *retried])

    # A pool that really dies (its whole namespace killed): the other one recovers its task
    # by the heartbeat lease, as it would a worker on another host.
    doomed = tasks.tracked.using(queue_name="emails").enqueue(str(side), "doomed", 120)
    wait_for(lambda: _runs(started)["doomed"] == 1, timeout_s=30, what="the doomed task to start")
    first.kill(signal.SIGKILL)
    first.started.wait(timeout_s=10)
    wait_for(
        lambda: backend.get_result(doomed.id).status == TaskResultStatus.FAILED,
        timeout_s=lease_s + 20,
        what="the dead pool's task to be recovered",
    )
    assert [e.exception_class_path for e in backend.get_result(doomed.id).errors] == [WORKER_LOST]
    second.kill(signal.SIGTERM)
    assert second.started.wait(timeout_s=15) == 0, second.started.output
