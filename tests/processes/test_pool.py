"""The supervised pool under crashes, signals and contention: real processes, bounded waits.

Every test ends with ``Pool.account()``, which says what became of every task it enqueued:
still in the table (none lost), never RUNNING, finished at most once and exactly once when
SUCCESSFUL, never run twice at the same time, and ``attempts == len(worker_ids)``. Tasks are
``tests.tasks.tracked``, which logs each start and finish to side files.

Leases are short (``lease_s`` 2 s, heartbeat 0.5 s, through a settings module written to
``tmp_path``), so recovery tests take seconds. Timings worth quoting are printed (``-s``).
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from litetasks._runtime.recovery import recover_lost
from litetasks._store.liveness import is_same_process_alive, process_start
from litetasks._store.records import JobState
from tests import tasks
from tests.harness import (
    FAST,
    WORKER_LOST,
    Pool,
    descendants,
    is_alive,
    report,
    stop,
    wait_for,
)

pytestmark = pytest.mark.slow


# Short enough that lease expiry and sweeps take seconds, long enough for a loaded CI box.


# -- kill -9 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_attempts", "final"), [(1, JobState.FAILED), (2, JobState.SUCCESSFUL)]
)
def test_a_killed_child_s_task_is_settled_within_2_s_and_a_replacement_serves(
    pool: Pool, max_attempts: int, final: JobState
) -> None:
    victim = pool.enqueue("victim", 1.0, max_attempts=max_attempts)
    queued = [pool.enqueue(f"queued-{i}") for i in range(3)]
    worker = pool.start()
    [child] = pool.children(1)
    assert pool.pid_running("victim") == child

    os.kill(child, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(  # READY (or already RUNNING again) with max_attempts=2, else FAILED
        lambda: pool.job(victim).errors,
        timeout_s=2,
        interval_s=0.01,
        what="the killed child's task to be settled",
    )
    report(
        f"child kill -9 -> its task settled (max_attempts={max_attempts})",
        time.monotonic() - killed,
    )

    pool.wait_state(victim, final)
    for job_id in queued:
        wait_for(
            lambda j=job_id: pool.job(j).state.is_finished,
            timeout_s=15,
            what="the queued tasks to finish",
        )
    assert stop(worker) == 0, worker.output
    jobs = pool.account()
    assert [e.exception_class_path for e in jobs["victim"].errors] == [WORKER_LOST]
    assert jobs["victim"].attempts == max_attempts
    # A task the killed child had claimed ahead (prefetch) but not started is lost with it:
    # FAILED as WorkerLost without having run. Every other one ran once, in the replacement.
    started = pool.started()
    prefetched = [label for label, job in jobs.items() if label != "victim" and not started[label]]
    assert len(prefetched) <= 1, jobs
    for label in prefetched:
        assert [e.exception_class_path for e in jobs[label].errors] == [WORKER_LOST], label
    replacements = {pid for _, pid in pool.lines()}
    assert child not in replacements and len(replacements) == 1, pool.lines()
    assert pool.store.get_workers() == []


def test_children_exit_when_the_supervisor_is_killed_and_the_next_start_runs_their_tasks(
    open_pool: Callable[..., Pool],
) -> None:
    pool = open_pool(**{**FAST, "grace_s": 0.5})
    ids = [pool.enqueue(f"long-{i}", 3.0) for i in range(2)]
    first = pool.start(processes=2, threads=2)  # however the tasks are spread, both start
    children = pool.children(2)
    wait_for(lambda: len(pool.started()) == 2, timeout_s=10, what="both tasks to start")

    os.kill(first.pid, signal.SIGKILL)
    killed = time.monotonic()
    first.wait(timeout_s=5)
    # PR_SET_PDEATHSIG delivers SIGTERM; each child lets its task run for grace_s, then puts
    # it back (an interrupted attempt does not count) and exits.
    wait_for(
        lambda: not any(is_alive(pid) for pid in children),
        timeout_s=5,
        interval_s=0.01,
        what="the orphaned children to exit",
    )
    report("supervisor kill -9 -> all children gone", time.monotonic() - killed)
    assert pool.procs.survivors() == []
    for job_id in ids:
        job = pool.job(job_id)
        assert (job.state, job.attempts, job.worker_ids) == (JobState.READY, 0, ()), job

    restarted = time.monotonic()
    second = pool.start(processes=2, threads=2)
    for label in ("long-0", "long-1"):
        pool.pid_running(label, start=2)
    report("restart -> released tasks running again", time.monotonic() - restarted)
    for job_id in ids:
        pool.wait_state(job_id, JobState.SUCCESSFUL)
    assert stop(second) == 0, second.output
    jobs = pool.account()
    assert all(job.attempts == 1 and job.errors == () for job in jobs.values()), jobs


def test_after_kill_9_of_everything_the_next_start_settles_stranded_tasks_at_once(
    open_pool: Callable[..., Pool],
) -> None:
    # The default 60 s lease: settling in about a second can only come from the pid check.
    pool = open_pool()
    once = [pool.enqueue(f"once-{i}", 30.0) for i in range(2)]
    twice = [pool.enqueue(f"twice-{i}", 1.0, max_attempts=2) for i in range(2)]
    first = pool.start(processes=2, threads=4)  # however the tasks are spread, all start
    wait_for(lambda: len(pool.started()) == 4, timeout_s=15, what="all four tasks to start")
    everything = [first.pid, *descendants(first.pid)]
    for signum in (signal.SIGSTOP, signal.SIGKILL):  # stopped first: no one gets to clean up
        for pid in everything:
            os.kill(pid, signum)
    first.wait(timeout_s=5)
    wait_for(lambda: not any(is_alive(p) for p in everything), timeout_s=5, what="the kill")
    assert pool.running() == 4

    restarted = time.monotonic()
    second = pool.start(processes=2, threads=4)
    wait_for(  # the twice-* tasks may be RUNNING again by then, under the new pool
        lambda: all(pool.job(j).errors for j in [*once, *twice]),
        timeout_s=10,
        interval_s=0.01,
        what="every stranded task to be settled",
    )
    report(
        "restart after kill -9 of everything -> stranded tasks settled",
        time.monotonic() - restarted,
    )
    for job_id in once:
        pool.wait_state(job_id, JobState.FAILED)
    for job_id in twice:
        pool.wait_state(job_id, JobState.SUCCESSFUL)
    assert stop(second) == 0, second.output
    jobs = pool.account()
    for label, job in jobs.items():
        assert [e.exception_class_path for e in job.errors] == [WORKER_LOST], label
        assert job.attempts == (2 if label.startswith("twice") else 1), (label, job)


def test_a_zombie_worker_is_dead_even_before_it_is_reaped() -> None:
    # Orphans are reaped by init, which here takes up to a second and in some containers never
    # happens. Until then /proc still shows the exited process, with its start time.
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{exited.pid}/stat")
    try:
        fields = wait_for(
            lambda: (f := stat.read_text().rpartition(")")[2].split())[0] == "Z" and f,
            timeout_s=10,
            what="the child to exit",
        )
        assert process_start(exited.pid) is None
        assert not is_same_process_alive(exited.pid, int(fields[19]))  # its real start time
    finally:
        exited.wait()


# -- SIGTERM and SIGINT --------------------------------------------------------------------------


def test_sigterm_lets_running_tasks_finish_and_leaves_queued_ones_ready(pool: Pool) -> None:
    long = [pool.enqueue(f"long-{i}", 1.5) for i in range(2)]
    queued = [pool.enqueue(f"queued-{i}") for i in range(3)]
    # One process: a second one could hold a queued task ahead and run it on its idle thread.
    worker = pool.start("--grace", "10", threads=2)
    for label in ("long-0", "long-1"):
        pool.pid_running(label)

    sent = time.monotonic()
    assert stop(worker) == 0, worker.output
    assert 1.0 < time.monotonic() - sent < 5, worker.output  # it waited for the tasks
    assert {pool.job(j).state for j in long} == {JobState.SUCCESSFUL}
    assert {(pool.job(j).state, pool.job(j).attempts) for j in queued} == {(JobState.READY, 0)}
    assert pool.procs.survivors() == []

    drain = pool.start("--burst")
    assert drain.wait(timeout_s=30) == 0, drain.output
    jobs = pool.account()
    assert {job.state for job in jobs.values()} == {JobState.SUCCESSFUL}


def test_sigterm_past_the_grace_period_puts_the_task_back_and_the_next_start_runs_it(
    pool: Pool,
) -> None:
    job_id = pool.enqueue("long", 3.0)
    worker = pool.start("--grace", "0.3")
    pool.pid_running("long")

    sent = time.monotonic()
    assert stop(worker) == 0, worker.output
    assert time.monotonic() - sent < 2, worker.output
    job = pool.job(job_id)
    assert (job.state, job.attempts, job.worker_ids, job.errors) == (JobState.READY, 0, (), ())

    again = pool.start()
    pool.wait_state(job_id, JobState.SUCCESSFUL)
    assert stop(again) == 0, again.output
    jobs = pool.account()
    assert jobs["long"].attempts == 1
    assert pool.started()["long"] == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_idle_pool_of_several_processes_exits_within_a_second(pool: Pool, signum: int) -> None:
    worker = pool.start(processes=2, threads=4)
    children = pool.children(2)

    sent = time.monotonic()
    code = stop(worker, signum, timeout_s=5)

    elapsed = time.monotonic() - sent
    report(f"idle pool, {signal.Signals(signum).name} -> exit", elapsed)
    assert code == 0 and elapsed < 1.0, worker.output
    assert not any(is_alive(pid) for pid in children)
    assert pool.store.get_workers() == []


def test_a_second_sigint_exits_at_once_and_puts_the_running_task_back(pool: Pool) -> None:
    job_id = pool.enqueue("long", 2.0)
    worker = pool.start("--grace", "60")
    child = pool.pid_running("long")

    worker.send(signal.SIGINT)
    worker.wait_for_line("Stopping", timeout_s=5)
    sent = time.monotonic()
    code = stop(worker, signal.SIGINT, timeout_s=5)

    assert time.monotonic() - sent < 1.0, worker.output
    assert not is_alive(child)
    # The supervisor SIGKILLs its children and exits 1 (a forced stop), but first puts their
    # tasks back to READY: the interrupted attempt does not count.
    assert code == 1, worker.output
    job = pool.job(job_id)
    assert (job.state, job.attempts, job.worker_ids) == (JobState.READY, 0, ()), job
    assert pool.store.get_workers() == []

    again = pool.start()
    pool.wait_state(job_id, JobState.SUCCESSFUL)
    assert stop(again) == 0, again.output
    pool.account()


def test_sigterm_at_random_moments_while_claiming_never_strands_or_repeats_a_task(
    pool: Pool,
) -> None:
    seed = os.environ.get("HAMMER_SEED", "litetasks")
    print(f"HAMMER_SEED={seed}")  # to replay a failure
    rng = random.Random(seed)
    batch = 0
    for iteration in range(20):
        ready = sum(n for (_, s), n in pool.store.counts().items() if s == JobState.READY)
        pool.enqueue_raw([f"t{batch + i}" for i in range(150 - ready)])
        batch += 150 - ready
        # Every other run recycles a child after each task: signals then also land in forks.
        recycle = ("--max-tasks-per-child", "1") if iteration % 2 else ()
        before = len(pool.lines())
        worker = pool.start(*recycle, processes=2, threads=2)
        wait_for(
            lambda n=before: len(pool.lines()) > n, timeout_s=15, interval_s=0.002, what="a run"
        )
        time.sleep(rng.uniform(0, 0.05))  # the moment to hit, not a wait for anything

        code = stop(worker, timeout_s=10)

        assert code == 0, worker.output
        assert pool.running() == 0, (iteration, worker.output)
        assert pool.procs.survivors() == []
        jobs = pool.account()
        for label, job in jobs.items():
            if job.state == JobState.READY:
                assert (job.attempts, job.worker_ids) == (0, ()), (label, job)
    assert pool.store.get_workers() == []
    assert len(pool.finished()) > 20, "the signals all came before any work"


# -- contention and long tasks -------------------------------------------------------------------


def test_a_write_lock_held_past_the_lease_neither_crashes_workers_nor_steals_their_task(
    open_pool: Callable[..., Pool],
) -> None:
    # The issue asks for 30 s. What matters is the lock outliving busy_timeout (0.25 s) and the
    # lease (1 s) many times over, so that every write fails and every heartbeat is stale; 4 s
    # is four leases and keeps the suite fast.
    lease_s = 1.0
    pool = open_pool(lease_s=lease_s, heartbeat_s=0.25, grace_s=5.0, busy_timeout_ms=250)
    held_s = 4.0
    short = pool.enqueue("short", 1.0)  # finishes under the lock: its outcome must wait
    long = pool.enqueue("long", held_s + 1.5)  # still running when the lock goes
    before = pool.enqueue("before")  # queued (or claimed ahead) before the lock
    worker = pool.start(threads=2)
    [child] = pool.children(1)
    pool.pid_running("short")
    pool.pid_running("long")

    locker = apsw.Connection(str(pool.store.path))
    locker.execute("BEGIN IMMEDIATE")
    try:
        deadline = time.monotonic() + held_s
        while time.monotonic() < deadline:  # the lock is the point: watch nothing crash
            assert worker.proc.poll() is None and is_alive(child), worker.output
            time.sleep(0.1)
        assert pool.finished()["short"] == 1
        assert {pool.job(j).state for j in (short, long)} == {JobState.RUNNING}
        assert pool.job(before).state in (JobState.READY, JobState.RUNNING)
        [row] = pool.store.get_workers()
        assert pool.store.now_us() - row.heartbeat_at_us > 2 * lease_s * 1e6
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    released = time.monotonic()
    # Whoever writes first now sees a heartbeat older than the lease. Sweep at once, with a
    # lease of 1 ms, to make sure: the child's pid is alive, so nothing of it is taken.
    assert recover_lost(pool.store, 0.001) == 0
    assert pool.job(long).state == JobState.RUNNING

    for job_id in (short, before, long):
        pool.wait_state(job_id, JobState.SUCCESSFUL)
        if job_id == before:
            report("write lock released -> queued task done", time.monotonic() - released)
    after = pool.enqueue("after")
    pool.wait_state(after, JobState.SUCCESSFUL)
    assert [w.pid for w in pool.store.get_workers()] == [child]  # the same child throughout
    assert stop(worker) == 0, worker.output
    assert "stayed locked" in worker.output
    jobs = pool.account()
    assert all(job.attempts == 1 and job.errors == () for job in jobs.values()), jobs
    assert {pid for _, pid in pool.lines()} == {child}


def test_a_live_task_running_five_leases_is_not_reclaimed(open_pool: Callable[..., Pool]) -> None:
    pool = open_pool(lease_s=0.5, heartbeat_s=0.2, grace_s=5.0)
    job_id = pool.enqueue("slow", 2.5)
    worker = pool.start(processes=2)
    pool.children(2)
    child = pool.pid_running("slow")
    [beat] = [w.heartbeat_at_us for w in pool.store.get_workers() if w.pid == child]

    job = pool.wait_state(job_id, JobState.SUCCESSFUL, timeout_s=15)

    # It kept heartbeating while it ran (the pid check would have saved it anyway).
    assert [w.heartbeat_at_us > beat for w in pool.store.get_workers() if w.pid == child] == [True]

    assert stop(worker) == 0, worker.output
    jobs = pool.account()
    assert (job.attempts, job.errors) == (1, ())
    assert pool.lines(".started") == [("slow", child)] and pool.lines() == [("slow", child)]
    assert jobs["slow"].finished_at_us - jobs["slow"].started_at_us >= 2_500_000


# -- recycling -----------------------------------------------------------------------------------


def test_max_tasks_per_child_replaces_children_and_runs_every_task_once(pool: Pool) -> None:
    ids = pool.enqueue_raw([f"t{i}" for i in range(20)])
    worker = pool.start("--max-tasks-per-child", "5")

    for job_id in ids:
        pool.wait_state(job_id, JobState.SUCCESSFUL)

    assert stop(worker) == 0, worker.output
    pool.account()
    per_child = collections.Counter(pid for _, pid in pool.lines())
    assert len(per_child) == 4 and set(per_child.values()) == {5}, per_child


def test_max_memory_per_child_replaces_the_child_after_the_task_that_grew_it(pool: Pool) -> None:
    small = pool.enqueue("small-0")
    big = tasks.hold_memory.enqueue(str(pool.side), "big", 100).id
    pool.labels[big] = "big"
    later = [pool.enqueue(f"small-{i}") for i in range(1, 4)]
    worker = pool.start("--max-memory-per-child", "60")

    for job_id in [small, big, *later]:
        pool.wait_state(job_id, JobState.SUCCESSFUL)

    assert stop(worker) == 0, worker.output
    pool.account()
    pids = dict(pool.lines())
    assert pids["small-0"] == pids["big"], "a fresh child was already over the limit"
    replacement = {pids[f"small-{i}"] for i in range(1, 4)}
    assert len(replacement) == 1 and pids["big"] not in replacement, pids
