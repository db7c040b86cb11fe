"""Which workers a process may judge by pid (its liveness domain), and which by heartbeat."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

from litetasks._runtime.recovery import recover_lost
from litetasks._store.clock import wall_clock_us
from litetasks._store.liveness import classify_workers, this_process
from litetasks._store.records import JobState, NewJob
from litetasks._store.schema import MIGRATIONS
from litetasks._store.store import Store
from tests.harness import REPO, worker_of_this_process

OTHER_NAMESPACE = "pid:[1]"  # no real namespace has this inode


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_this_process_knows_its_pid_namespace() -> None:
    here = this_process()

    assert here.pid_namespace == os.readlink("/proc/self/ns/pid")
    assert here.proc_start > 0


def test_workers_of_this_domain_are_judged_by_pid() -> None:
    dead, alive = classify_workers(
        [worker_of_this_process("live"), worker_of_this_process("gone", pid=_dead_pid())],
        this_process(),
    )

    assert (dead, alive) == (["gone"], ["live"])


@pytest.mark.parametrize(
    "namespace", [OTHER_NAMESPACE, ""], ids=["another namespace", "a row of schema version 2"]
)
def test_a_worker_of_another_domain_is_judged_by_heartbeat_alone(namespace: str) -> None:
    """Its pid 7 is not our pid 7: our /proc says nothing of it, alive or dead."""
    workers = [
        worker_of_this_process("same-pid", pid_namespace=namespace),
        worker_of_this_process("no-such-pid-here", pid=_dead_pid(), pid_namespace=namespace),
    ]

    assert classify_workers(workers, this_process()) == ([], [])


def test_a_process_that_does_not_know_its_namespace_judges_no_pid() -> None:
    here = dataclasses.replace(this_process(), pid_namespace="")

    assert classify_workers([worker_of_this_process("gone", pid=_dead_pid())], here) == ([], [])


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_a_process_whose_proc_shows_another_namespace_claims_no_domain() -> None:
    """``unshare --pid`` without ``--mount-proc`` keeps the host's /proc: our pid 1 there is the
    host's init, so reading /proc would judge other processes."""
    probe = "from litetasks._store.liveness import this_process; h = this_process(); "
    probe += "print(h.pid, repr(h.pid_namespace), h.proc_start)"
    done = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot create a PID namespace here: {done.stderr.strip()}")

    assert done.stdout.split() == ["1", "''", "0"]


def test_recovery_recovers_another_domains_worker_only_after_its_lease(tmp_path: Path) -> None:
    lease_s = 60.0
    with Store(tmp_path / "tasks.sqlite3") as store:
        store.register_worker(
            worker_of_this_process("far", pid=_dead_pid(), pid_namespace=OTHER_NAMESPACE)
        )
        store.enqueue([NewJob(job_id="a", task_path="t.f", queue_name="default", priority=0)])
        store.claim("far")

        assert recover_lost(store, lease_s) == 0  # its pid is gone here: that says nothing
        store._db.execute(
            "UPDATE workers SET heartbeat_at = heartbeat_at - :lease", {"lease": 61_000_000}
        )
        assert recover_lost(store, lease_s) == 1
        assert store.get("a").state is JobState.FAILED


def test_a_worker_registered_before_schema_version_3_is_judged_by_heartbeat(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.sqlite3"
    here = this_process()
    connection = apsw.Connection(str(path))
    for migration in MIGRATIONS[:2]:
        connection.execute(migration)
    connection.execute("PRAGMA user_version = 2")
    now = wall_clock_us()
    connection.execute(
        "INSERT INTO workers (worker_id, pid, host, boot_id, proc_start, queues, started_at, "
        "heartbeat_at) VALUES ('old', :pid, :host, :boot_id, 12345, NULL, :now, :now)",
        {"pid": _dead_pid(), "host": here.host, "boot_id": here.boot_id, "now": now},
    )
    connection.close()

    with Store(path) as store:
        [old] = store.get_workers()
        store.enqueue([NewJob(job_id="a", task_path="t.f", queue_name="default", priority=0)])
        store.claim("old")

        assert old.pid_namespace == ""
        assert recover_lost(store, 60.0) == 0
        assert store.get("a").state is JobState.RUNNING
