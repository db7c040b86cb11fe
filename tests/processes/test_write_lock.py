"""Writers of many processes take turns on the queue file's write lock (``_store/writelock.py``):
every task of every producer is stored once; a holder killed with SIGKILL frees it at once; a
stopped holder makes the others wait no longer than ``busy_timeout_ms``, with a clear error."""

from __future__ import annotations

import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from litetasks._store.records import JobState, NewJob
from litetasks._store.store import Store, new_job_ids
from litetasks.exceptions import StoreError
from tests.harness import ProcessGroup, Started, subprocess_env

pytestmark = pytest.mark.slow

# A writer of another process in the middle of a transaction: its turn of the write lock and
# SQLite's write lock, held until the file argv[2] appears.
HOLD = textwrap.dedent("""
    import fcntl, os, sys, time
    from pathlib import Path
    import apsw
    from litetasks._store.writelock import write_lock_path
    path, go = Path(sys.argv[1]), Path(sys.argv[2])
    fd = os.open(write_lock_path(path), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    db = apsw.Connection(str(path))
    db.execute("BEGIN IMMEDIATE")
    print("held", flush=True)
    while not go.exists():
        time.sleep(0.01)
    db.execute("COMMIT")
    fcntl.flock(fd, fcntl.LOCK_UN)
    print("released", flush=True)
""")

# Producers: argv[2] threads, each enqueueing argv[3] jobs, one call at a time and in threes.
PRODUCE = textwrap.dedent("""
    import sys, threading
    from litetasks._store.records import NewJob
    from litetasks._store.store import Store, new_job_ids
    path, threads, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    printing = threading.Lock()
    def produce():
        with Store(path, busy_timeout_ms=30_000) as store:
            ids = new_job_ids(count)
            for start in range(0, count, 4):
                jobs = [NewJob(job_id=i, task_path="app.tasks.t") for i in ids[start:start + 4]]
                store.enqueue(jobs[:1])
                if jobs[1:]:
                    store.enqueue(jobs[1:])
        with printing:  # one whole line per thread
            print(" ".join(ids), flush=True)
    workers = [threading.Thread(target=produce) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
""")

# Opens the queue, forks a child that only sleeps, then enqueues big batches until killed.
FORK_THEN_WRITE = textwrap.dedent("""
    import os, sys, time
    from litetasks._store.records import NewJob
    from litetasks._store.store import Store, new_job_ids
    store = Store(sys.argv[1])
    store.enqueue([NewJob(job_id=new_job_ids(1)[0], task_path="app.tasks.t")])
    if os.fork() == 0:
        time.sleep(120)
        os._exit(0)
    print("forked", flush=True)
    while True:
        store.enqueue([NewJob(job_id=i, task_path="app.tasks.t") for i in new_job_ids(20_000)])
""")


def start(procs: ProcessGroup, tmp_path: Path, code: str, *args: object) -> Started:
    argv = [sys.executable, "-c", code, *(str(arg) for arg in args)]
    return procs.start(argv, env=subprocess_env(settings=None), cwd=tmp_path)


def job(job_id: str) -> NewJob:
    return NewJob(job_id=job_id, task_path="app.tasks.t")


def enqueue_in_thread(path: Path, timeout_ms: int) -> tuple[threading.Thread, dict[str, Any]]:
    """Enqueue one job from a thread of its own; the dict gets when it returned, or the error."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            with Store(path, busy_timeout_ms=timeout_ms) as store:
                store.enqueue([job(new_job_ids(1)[0])])
            result["returned_at"] = time.monotonic()
        except BaseException as exc:  # reported by the test
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_producer_processes_and_threads_at_once_store_every_job_once(
    tmp_path: Path, procs: ProcessGroup
) -> None:
    path = tmp_path / "tasks.sqlite3"
    Store(path).close()
    shapes = [(1, 200), (1, 200), (1, 200), (4, 100)]  # threads, jobs each

    started = [start(procs, tmp_path, PRODUCE, path, threads, n) for threads, n in shapes]

    ids: list[str] = []
    for producer in started:
        assert producer.wait(timeout_s=120) == 0, producer.output
        ids += producer.output.split()
    assert len(ids) == len(set(ids)) == sum(threads * n for threads, n in shapes)
    with Store(path) as store:
        assert store.counts() == {("default", JobState.READY): len(ids)}


def test_a_writer_killed_while_it_holds_the_lock_frees_it_at_once(
    tmp_path: Path, procs: ProcessGroup
) -> None:
    path = tmp_path / "tasks.sqlite3"
    Store(path).close()
    holder = start(procs, tmp_path, HOLD, path, tmp_path / "go")
    holder.wait_for_line("held", timeout_s=30)

    thread, result = enqueue_in_thread(path, timeout_ms=30_000)
    time.sleep(0.5)
    assert result == {}  # waiting for its turn
    killed = time.monotonic()
    holder.send(signal.SIGKILL)
    thread.join(20)

    assert "error" not in result, result
    assert result["returned_at"] - killed < 3.0  # woken by the kernel, not the 30 s timeout
    with Store(path) as store:
        assert store.counts() == {("default", JobState.READY): 1}


def test_a_stopped_holder_makes_writers_wait_only_until_the_busy_timeout(
    tmp_path: Path, procs: ProcessGroup
) -> None:
    path = tmp_path / "tasks.sqlite3"
    Store(path).close()
    holder = start(procs, tmp_path, HOLD, path, tmp_path / "go")
    holder.wait_for_line("held", timeout_s=30)
    holder.send(signal.SIGSTOP)
    try:
        with Store(path, busy_timeout_ms=300) as store:
            for _ in range(2):  # the second waits again: the first wait is still in the kernel
                began = time.monotonic()
                with pytest.raises(StoreError, match=r"stayed locked .* busy_timeout_ms=300"):
                    store.enqueue([job("a" * 32)])
                assert 0.25 < time.monotonic() - began < 5
            holder.send(signal.SIGCONT)
            (tmp_path / "go").touch()
            holder.wait_for_line("released", timeout_s=30)

            store.enqueue([job("b" * 32)])

            assert store.counts() == {("default", JobState.READY): 1}
            assert store.get("b" * 32).state is JobState.READY
    finally:
        holder.send(signal.SIGCONT)


def test_a_forked_child_does_not_keep_a_killed_parents_lock(
    tmp_path: Path, procs: ProcessGroup
) -> None:
    path = tmp_path / "tasks.sqlite3"
    Store(path).close()
    writer = start(procs, tmp_path, FORK_THEN_WRITE, path)
    writer.wait_for_line("forked", timeout_s=30)
    time.sleep(0.5)  # enqueueing batches of 20,000: nearly always holding the lock

    writer.send(signal.SIGKILL)
    killed = time.monotonic()
    thread, result = enqueue_in_thread(path, timeout_ms=30_000)
    thread.join(40)

    assert "error" not in result, result
    assert result["returned_at"] - killed < 5.0  # its sleeping child holds nothing
    assert procs.survivors()  # the child still runs
