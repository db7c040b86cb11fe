"""Many processes on one queue file, worker processes killed at random: none lost or run twice.

Two ``litetasks run --processes 2 --threads 3`` supervisors serve the queue file while three
enqueuing processes call ``Task.enqueue`` in a loop, and this test ``kill -9``s a random worker
process (a child of a supervisor, most often one with tasks claimed) every 0.3-1 s until every
task is settled. Then the supervisors stop on SIGTERM and a ``litetasks run --burst`` recovery
pass runs. The enqueued tasks are ``tests.tasks.append_line``, which appends ``<marker> <pid>``
to a side file, with the default ``max_attempts=1``; so:

- every task is SUCCESSFUL or FAILED (none READY or RUNNING), and none is lost;
- a SUCCESSFUL task's line is in the side file exactly once; a FAILED one failed only as
  ``WorkerLost``, its line is there at most once, and then it was written by a killed process
  (a task is claimed ahead, or finished and not yet recorded, when its process dies);
- no enqueuer saw an exception, and no process printed "database is locked" or a traceback;
- ``PRAGMA integrity_check`` is ``ok``, and no worker is left registered.

One task in ten more is ``tests.tasks.tracked`` with ``max_attempts=3``, inserted in batches by
this process through the store (Django's API cannot set ``max_attempts``): it runs again after
a kill, but only once the process of its earlier attempt is dead, never overlapping it.

``LITETASKS_STRESS_N`` sets the number of tasks (default 3000 locally, 20,000 under CI: about
25 s on two cores), ``LITETASKS_STRESS_SPAN_S`` how long the enqueuers spread them over (default
8 s, 15 s under CI; 0 enqueues as fast as possible, which measures throughput), and
``LITETASKS_STRESS_SEED`` replays one run's enqueue and kill schedule (it is printed; the timing
of processes still varies). For more, locally::

    LITETASKS_STRESS_N=30000 LITETASKS_STRESS_SPAN_S=30 \
        python -m pytest tests/processes/test_stress.py -s
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from litetasks._django.backend import SQLiteBackend
from litetasks._store.enqueueing import new_job_id
from litetasks._store.records import JobState, NewJob
from tests.harness import (
    ProcessGroup,
    Started,
    descendants,
    litetasks_argv,
    subprocess_env,
    wait_for,
)

pytestmark = pytest.mark.slow

IN_CI = bool(os.environ.get("CI"))
TASKS = int(os.environ.get("LITETASKS_STRESS_N", "20000" if IN_CI else "3000"))
RETRIED = TASKS // 10  # tracked() rows with max_attempts=3, inserted by this process
RETRY_ATTEMPTS = 3
SEED = int(os.environ.get("LITETASKS_STRESS_SEED", str(random.randrange(2**32))))
# Enqueuers send bursts of 1-100 tasks with pauses between them, spread over about this long,
# so workers go idle and wake up again while they are being killed. 0: as fast as they can.
SPAN_S = float(os.environ.get("LITETASKS_STRESS_SPAN_S", "15" if IN_CI else "8"))
SUPERVISORS = 2
PROCESSES = 2  # per supervisor
THREADS = 3  # per worker process
ENQUEUERS = 3
KILL_EVERY_S = (0.3, 1.0)
QUEUES = ("default", "emails", "reports")
# Most tasks are instant; some sleep, so that kills also land in the middle of a task.
SLEEPS_S = (0.0, 0.0, 0.0, 0.001, 0.005)
# Only a bound for a failure: a run takes SPAN_S plus a few seconds here.
DEADLINE_S = SPAN_S + 60 + (TASKS + RETRIED) / 100
WORKER_LOST = "litetasks.exceptions.WorkerLost"
TROUBLE = ("database is locked", "stayed locked", "StoreError", "Traceback")

# What an enqueuing process runs: Django first, then this module's enqueue_main().
ENQUEUER = "; ".join(
    [
        "import django",
        "django.setup()",
        "from tests.processes.test_stress import enqueue_main",
        "enqueue_main()",
    ]
)


def enqueue_main() -> None:
    """Enqueue ``append_line(side, "<name>-<i>")`` ``count`` times, in bursts; write
    ``{marker: id}`` to ``out``. Arguments: name count side out seed. Any exception ends the
    process with a traceback and exit code 1, and ``out`` is not written."""
    from tests import tasks

    name, count, side, out, seed = sys.argv[1:6]
    rng = random.Random(f"{seed}-{name}")
    mean_pause_s = SPAN_S / max(1, int(count) / 50)  # bursts average 50 tasks
    ids: dict[str, str] = {}
    for index in range(int(count)):
        if rng.random() < 1 / 50:
            time.sleep(rng.uniform(0, 2 * mean_pause_s))
        marker = f"{name}-{index}"
        task = tasks.append_line.using(priority=rng.randint(-3, 3), queue_name=rng.choice(QUEUES))
        ids[marker] = task.enqueue(side, marker, rng.choice(SLEEPS_S)).id
    Path(out).write_text(json.dumps(ids))


class Run:
    """The processes of one stress run on ``root/tasks.sqlite3``."""

    def __init__(self, root: Path, procs: ProcessGroup, backend: SQLiteBackend) -> None:
        self.root = root
        self.procs = procs
        self.backend = backend
        self.side = root / "ran.txt"
        self.retried_side = root / "retried.txt"  # tracked() adds .started and .concurrent
        self.retried: dict[str, str] = {}  # label -> job id
        self.env = subprocess_env(root)
        self.supervisors: list[Started] = []
        self.enqueuers: list[Started] = []
        self.killed: set[int] = set()
        self.busy_kills = 0  # kills of a process that had tasks claimed
        self.rng = random.Random(SEED)

    def start_supervisors(self) -> None:
        argv = litetasks_argv(
            "run", "--processes", str(PROCESSES), "--threads", str(THREADS), "--log-level",
            "WARNING",
        )  # fmt: skip
        self.supervisors = [
            self.procs.start(argv, env=self.env, cwd=self.root) for _ in range(SUPERVISORS)
        ]
        wait_for(
            lambda: len(self.backend.store.get_workers()) >= SUPERVISORS * PROCESSES,
            timeout_s=30,
            what="every worker process to register",
        )

    def start_enqueuers(self) -> None:
        share = [TASKS // ENQUEUERS + (i < TASKS % ENQUEUERS) for i in range(ENQUEUERS)]
        for index, count in enumerate(share):
            argv = [
                sys.executable, "-c", ENQUEUER, f"e{index}", str(count), str(self.side),
                str(self.out(index)), str(SEED),
            ]  # fmt: skip
            self.enqueuers.append(self.procs.start(argv, env=self.env, cwd=self.root))

    def out(self, index: int) -> Path:
        return self.root / f"enqueued-{index}.json"

    def kill_a_worker(self) -> None:
        """SIGKILL a live worker process (a supervisor's child), mostly one running tasks,
        unless it is the last one alive."""
        workers = [
            pid
            for supervisor in self.supervisors
            for pid in descendants(supervisor.pid)
            if _is_running(pid)
        ]
        if len(workers) < 2:
            # Keep one running. Each kill of a young worker doubles its supervisor's restart
            # delay (up to 30 s), so killing every worker that comes back would stall a long run.
            return
        busy = {w.pid for w in self.backend.store.get_workers() if w.current_job_ids}
        if busy & set(workers) and self.rng.random() < 0.7:
            workers = sorted(busy & set(workers))
        victim = self.rng.choice(workers)
        with contextlib.suppress(ProcessLookupError):  # it died meanwhile; no other can
            os.kill(victim, signal.SIGKILL)
            self.killed.add(victim)
            self.busy_kills += victim in busy

    def enqueue_retried(self, count: int) -> None:
        """Insert ``count`` ``tracked`` rows that may run three times, in one transaction.

        Django's API cannot set ``max_attempts`` yet, so they go in through the store.
        """
        count = min(count, RETRIED - len(self.retried))
        labels = [f"r{len(self.retried) + i}" for i in range(count)]
        jobs = [
            NewJob(
                job_id=new_job_id(),
                task_path="tests.tasks.tracked",
                queue_name=self.rng.choice(QUEUES),
                args_json=json.dumps([str(self.retried_side), label, self.rng.choice(SLEEPS_S)]),
                max_attempts=RETRY_ATTEMPTS,
            )
            for label in labels
        ]
        if jobs:
            self.backend.store.enqueue(jobs)
        self.retried.update({label: job.job_id for label, job in zip(labels, jobs, strict=True)})

    def settled(self) -> bool:
        """Whether every task is enqueued and finished (every enqueuer has exited)."""
        if any(e.proc.poll() is None for e in self.enqueuers) or len(self.retried) < RETRIED:
            return False
        counts = self.backend.store.counts()
        finished = sum(n for (_, state), n in counts.items() if state.is_finished)
        return finished == sum(counts.values()) == TASKS + RETRIED

    def stop_supervisors(self) -> None:
        for supervisor in self.supervisors:
            supervisor.send(signal.SIGTERM)
        for supervisor in self.supervisors:
            assert supervisor.wait(timeout_s=40) == 0, supervisor.output

    def recover(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            litetasks_argv("run", "--burst", "--processes", "1"),
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def side_effects(path: Path) -> dict[str, list[int]]:
    """The pids that wrote each marker's line in ``path``, in order."""
    ran: dict[str, list[int]] = collections.defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            marker, pid = line.split()
            ran[marker].append(int(pid))
    return ran


def _is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def test_killing_worker_processes_at_random_loses_no_task_and_runs_none_twice(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    print(f"\n[stress] LITETASKS_STRESS_N={TASKS} LITETASKS_STRESS_SEED={SEED}")
    with ProcessGroup().cleanup() as procs:
        run = Run(tmp_path, procs, backend)
        run.start_supervisors()
        began = time.monotonic()
        run.start_enqueuers()
        next_kill = began
        while not run.settled():
            now = time.monotonic()
            assert now - began < DEADLINE_S, (backend.store.counts(), _outputs(run))
            if now >= next_kill:
                run.enqueue_retried(max(20, RETRIED // 10))
                if now > began:
                    run.kill_a_worker()
                next_kill = now + run.rng.uniform(*KILL_EVERY_S)
            time.sleep(0.02)
        elapsed = time.monotonic() - began
        run.stop_supervisors()
        recovery = run.recover()
    assert recovery.returncode == 0, recovery.stderr
    for index, enqueuer in enumerate(run.enqueuers):
        assert enqueuer.proc.returncode == 0, enqueuer.output
        assert run.out(index).exists(), enqueuer.output
    outputs = _outputs(run) + recovery.stdout + recovery.stderr
    assert not [word for word in TROUBLE if word in outputs], outputs

    store = backend.store
    assert sum(store.counts().values()) == TASKS + RETRIED  # nothing lost, nothing extra
    once = check_tasks_run_at_most_once(run)
    retried = check_retried_tasks_never_overlap(run)
    assert store.integrity_check() == "ok"
    assert store.get_workers() == []
    print(
        f"[stress] {TASKS + RETRIED} tasks settled in {elapsed:.1f} s "
        f"({(TASKS + RETRIED) / elapsed:.0f} tasks/s) by {SUPERVISORS}x{PROCESSES} processes x "
        f"{THREADS} threads, {ENQUEUERS} enqueuers; {len(run.killed)} kill -9 "
        f"({run.busy_kills} with tasks claimed); max_attempts=1: {dict(once)}; "
        f"max_attempts={RETRY_ATTEMPTS}: {dict(retried)}"
    )


def check_tasks_run_at_most_once(run: Run) -> collections.Counter[str]:
    """Check the ``append_line`` tasks (max_attempts=1); count them by outcome."""
    ids: dict[str, str] = {}
    for index in range(ENQUEUERS):
        ids.update(json.loads(run.out(index).read_text()))
    assert len(ids) == TASKS
    ran = side_effects(run.side)
    assert set(ran) <= set(ids), set(ran) - set(ids)
    seen: collections.Counter[str] = collections.Counter()
    for marker, job_id in ids.items():
        job = run.backend.store.get(job_id)
        lines = ran.get(marker, [])
        assert job.attempts == len(job.worker_ids) == 1, (marker, job)
        if job.state == JobState.SUCCESSFUL:
            assert len(lines) == 1, (marker, lines, job)
            assert job.return_json == json.dumps(marker)
            seen["SUCCESSFUL"] += 1
            continue
        assert job.state == JobState.FAILED, (marker, job)
        assert [e.exception_class_path for e in job.errors] == [WORKER_LOST], (marker, job)
        assert len(lines) <= 1, (marker, lines, job)
        assert set(lines) <= run.killed, (marker, lines, job)  # lost only with its process
        seen["FAILED, had run" if lines else "FAILED, never started"] += 1
    return seen


def check_retried_tasks_never_overlap(run: Run) -> collections.Counter[str]:
    """Check the ``tracked`` tasks (max_attempts=3); count them by attempts and outcome.

    A task starts again only after its earlier attempt's process was killed, and two runs of
    one task never overlap (``tracked`` holds an flock while it runs).
    """
    concurrent = Path(f"{run.retried_side}.concurrent")
    assert not concurrent.exists(), f"ran twice at once: {concurrent.read_text()}"
    started = side_effects(Path(f"{run.retried_side}.started"))
    finished = side_effects(run.retried_side)
    assert set(started) <= set(run.retried) and set(finished) <= set(started)
    seen: collections.Counter[str] = collections.Counter()
    for label, job_id in run.retried.items():
        job = run.backend.store.get(job_id)
        starts, finishes = started.get(label, []), finished.get(label, [])
        assert job.attempts == len(job.worker_ids), (label, job)
        assert len(finishes) <= len(starts) <= job.attempts, (label, starts, job)
        assert all(e.exception_class_path == WORKER_LOST for e in job.errors), (label, job)
        if job.state == JobState.SUCCESSFUL:
            assert len(job.errors) == job.attempts - 1, (label, job)
            assert finishes and set(starts[:-1]) <= run.killed, (label, starts, finishes, job)
        else:
            assert job.state == JobState.FAILED, (label, job)
            assert len(job.errors) == job.attempts == RETRY_ATTEMPTS, (label, job)
            assert set(starts) <= run.killed, (label, starts, job)
        seen[f"{job.state.value} after {job.attempts}"] += 1
    return seen


def _outputs(run: Run) -> str:
    return "\n".join(
        f"--- pid {started.pid}: {' '.join(map(str, started.proc.args))[:200]}\n{started.output}"
        for started in [*run.supervisors, *run.enqueuers]
    )
