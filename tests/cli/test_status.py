"""``litetasks status`` data: live workers, lost workers and the tasks stranded under them."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from rich.console import Console

from litetasks._cli.status import print_status, status_data
from litetasks._store.clock import wall_clock_us
from litetasks._store.liveness import process_start, this_process
from litetasks._store.records import WorkerRecord
from tests import tasks


def _register(
    backend,
    worker_id: str,
    *,
    pid: int,
    proc_start: int,
    heartbeat_age_s: float = 0,
    threads: int | None = None,
):  # type: ignore[no-untyped-def]
    here = this_process()
    now = wall_clock_us()
    backend.store.register_worker(
        WorkerRecord(
            worker_id=worker_id,
            pid=pid,
            host=here.host,
            boot_id=here.boot_id,
            proc_start=proc_start,
            pid_namespace=here.pid_namespace,
            queues=("emails",),
            threads=threads,
            started_at_us=now,
            heartbeat_at_us=now,
        )
    )
    if heartbeat_age_s:
        backend.store._db.execute(
            "UPDATE workers SET heartbeat_at = ? WHERE worker_id = ?",
            (now - int(heartbeat_age_s * 1_000_000), worker_id),
        )


def test_status_lists_a_live_worker_with_its_running_task(backend) -> None:  # type: ignore[no-untyped-def]
    here = this_process()
    _register(backend, "w-live", pid=here.pid, proc_start=here.proc_start)
    result = tasks.noop.enqueue()
    [job] = backend.store.claim("w-live")
    data = status_data(backend)
    [worker] = data["workers"]
    assert worker["worker_id"] == "w-live"
    assert worker["running"] == [result.id] == [job.job_id]
    assert worker["queues"] == ["emails"]
    assert worker["is_lost"] is False
    assert data["stranded_workers"] == []


def test_status_reports_tasks_running_under_a_dead_worker(backend) -> None:  # type: ignore[no-untyped-def]
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    assert process_start(pid) is None
    _register(backend, "w-dead", pid=pid, proc_start=12345)
    tasks.noop.enqueue()
    backend.store.claim("w-dead")
    data = status_data(backend)
    assert [w["is_lost"] for w in data["workers"]] == [True]
    assert data["stranded_workers"] == ["w-dead"]


def test_a_live_process_with_a_stale_heartbeat_is_not_reported_lost(backend) -> None:  # type: ignore[no-untyped-def]
    here = this_process()
    _register(backend, "w-slow", pid=here.pid, proc_start=here.proc_start, heartbeat_age_s=3600)
    tasks.noop.enqueue()
    backend.store.claim("w-slow")
    data = status_data(backend)
    assert data["workers"][0]["heartbeat_age_s"] >= 3600
    assert data["workers"][0]["is_lost"] is False
    assert data["stranded_workers"] == []


def test_a_worker_elsewhere_is_lost_only_after_the_lease(backend) -> None:  # type: ignore[no-untyped-def]
    lease_s = backend.config.worker.lease_s
    _register(backend, "w-far", pid=1, proc_start=1, heartbeat_age_s=lease_s / 2)
    backend.store._db.execute("UPDATE workers SET host = 'elsewhere'")
    assert status_data(backend)["workers"][0]["is_lost"] is False
    backend.store._db.execute(
        "UPDATE workers SET heartbeat_at = ?", (wall_clock_us() - int(lease_s * 2e6),)
    )
    assert status_data(backend)["workers"][0]["is_lost"] is True


def test_status_names_a_queue_with_ready_tasks_that_no_live_worker_serves(backend) -> None:  # type: ignore[no-untyped-def]
    here = this_process()
    _register(backend, "w-mail", pid=here.pid, proc_start=here.proc_start)  # serves "emails"
    tasks.noop.using(queue_name="reports").enqueue()
    tasks.noop.using(queue_name="emails").enqueue()

    assert status_data(backend)["unserved_queues"] == ["reports"]


def test_status_names_no_unserved_queue_without_workers_or_with_one_serving_all(backend) -> None:  # type: ignore[no-untyped-def]
    tasks.noop.using(queue_name="reports").enqueue()
    assert status_data(backend)["unserved_queues"] == []  # nothing runs: status says so already
    here = this_process()
    _register(backend, "w-mail", pid=here.pid, proc_start=here.proc_start)
    backend.store._db.execute("UPDATE workers SET queues = NULL")
    assert status_data(backend)["unserved_queues"] == []


def test_status_shows_each_workers_threads_and_a_dash_when_unknown(backend) -> None:  # type: ignore[no-untyped-def]
    here = this_process()
    _register(backend, "w-new", pid=here.pid, proc_start=here.proc_start, threads=4)
    _register(backend, "w-old", pid=here.pid, proc_start=here.proc_start)  # an older row: NULL
    printed = io.StringIO()

    print_status(backend, as_json=False, console=Console(file=printed, width=160))

    data = status_data(backend)
    assert {w["worker_id"]: w["threads"] for w in data["workers"]} == {"w-new": 4, "w-old": None}
    rows = [
        [cell.strip() for cell in re.split(r"[│┃]", line)[1:-1]]
        for line in printed.getvalue().splitlines()
        if "│" in line or "┃" in line
    ]
    start = next(i for i, row in enumerate(rows) if row[0] == "pid")  # the workers table
    header, *workers = rows[start:]
    column = header.index("threads")
    assert sorted(row[column] for row in workers) == ["-", "4"]
