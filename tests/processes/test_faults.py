"""Faults injected at each step of claim, run and record, in a real ``litetasks run``.

``LITETASKS_FAULTS`` (``litetasks/_store/faults.py``) makes the worker process ``kill -9`` itself,
SIGTERM its supervisor, or raise an unexpected exception at one named point, once (the first
process to reach it). Six ``tests.tasks.tracked`` tasks are queued first (two of them may run
twice); after the fault the same supervisor (or, after SIGTERM, a ``--burst`` pool) settles
everything. Then, whatever the point and action:

- every task is SUCCESSFUL or FAILED; none is READY, RUNNING, or lost;
- a SUCCESSFUL task with one attempt ran exactly once; no task finished more often than it
  was attempted; ``attempts == len(worker_ids)``; two runs of one task never overlapped;
- a FAILED task failed only as ``WorkerLost`` (it was running in the worker that was killed or
  crashed: lost, never put back as not started nor silently done);
- the supervisor exits 0 after SIGTERM; ``PRAGMA integrity_check`` is ``ok``; no worker is
  left registered.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from litetasks._store.faults import POINTS
from litetasks._store.records import JobState
from tests.harness import (
    REPO,
    WORKER_LOST,
    Pool,
    Started,
    litetasks_argv,
    run_cli,
    stop,
    subprocess_env,
    wait_for,
)

pytestmark = pytest.mark.slow


OPTIONS = {"lease_s": 2.0, "heartbeat_s": 0.5, "grace_s": 3.0}
# Where raising models an unexpected error: in the store's transaction or the dispatcher. (An
# executor raises only by a bug between two lines with nothing between them.)
RAISE_POINTS = [p for p in POINTS if not p.startswith("run.")]
CASES = [
    *[(point, "kill9") for point in POINTS],
    *[(point, "sigterm") for point in POINTS],
    *[(point, "raise") for point in RAISE_POINTS],
]


def start_with_fault(pool: Pool, point: str, action: str, once: Path) -> Started:
    env = subprocess_env(pool.root, settings="pool_settings", pythonpath=(REPO, pool.root))
    env.update(LITETASKS_FAULTS=f"{point}={action}", LITETASKS_FAULTS_ONCE=str(once))
    argv = litetasks_argv("run", "--processes", "1", "--threads", "2")
    return pool.procs.start(argv, env=env, cwd=pool.root)


@pytest.mark.parametrize(("point", "action"), CASES)
def test_a_fault_at_each_step_loses_no_task_and_runs_none_twice(
    open_pool: Callable[..., Pool], tmp_path: Path, point: str, action: str
) -> None:
    pool = open_pool(**OPTIONS)
    # The first claim (two threads) takes one of each kind.
    for index in range(2):
        pool.enqueue(f"twice-{index}", 0.02, max_attempts=2)
        pool.enqueue(f"once-{index}", 0.02)
    for index in range(2, 4):
        pool.enqueue(f"once-{index}", 0.02)
    once = tmp_path / "fired"
    once.mkdir()

    supervisor = start_with_fault(pool, point, action, once)
    wait_for((once / point).exists, timeout_s=20, what=f"the fault at {point}")

    if action == "sigterm":  # the pool stops by itself; a burst runs what it left
        assert supervisor.wait(timeout_s=20) == 0, supervisor.output
        burst = run_cli("run", "--burst", "--processes", "1", cwd=pool.root, env=_env(pool))
        assert burst.returncode == 0, burst.stderr
    else:  # the supervisor settles the dead (or failed) worker's tasks and starts another
        wait_for(
            lambda: all(job.state.is_finished for job in map(pool.job, pool.labels)),
            timeout_s=30,
            what="every task to finish",
        )
        assert stop(supervisor) == 0, supervisor.output

    check_every_task(pool, action)
    expected_tracebacks = 1 if action == "raise" else 0  # the worker that raised: one crash
    assert supervisor.output.count("Traceback") == expected_tracebacks, supervisor.output


def check_every_task(pool: Pool, action: str) -> None:
    """What each task became: see the module docstring."""
    store = pool.store
    assert sum(store.counts().values()) == len(pool.labels)
    assert not Path(f"{pool.side}.concurrent").exists()
    started, finished = pool.started(), pool.finished()
    for job_id, label in pool.labels.items():
        job = pool.job(job_id)
        assert job.state.is_finished, (label, job)
        assert job.attempts == len(job.worker_ids), (label, job)
        assert finished[label] <= started[label] <= job.attempts, (label, job, finished)
        assert all(e.exception_class_path == WORKER_LOST for e in job.errors), (label, job)
        if job.state == JobState.SUCCESSFUL:
            assert finished[label] >= 1, (label, job)
            if job.max_attempts == 1:
                assert finished[label] == 1, (label, job)
        else:
            # Only a dead worker (killed, or crashed by an unexpected error) loses an attempt.
            assert action in ("kill9", "raise"), (label, job)
            assert job.errors and finished[label] <= 1, (label, job)
    assert store.integrity_check() == "ok"
    assert store.get_workers() == []
    jobs = {label: pool.job(job_id) for job_id, label in pool.labels.items()}
    print(f"\n[faults] {' '.join(f'{k}:{v.state}/{v.attempts}' for k, v in sorted(jobs.items()))}")


def _env(pool: Pool) -> dict[str, str]:
    return subprocess_env(pool.root, settings="pool_settings", pythonpath=(REPO, pool.root))


def test_faults_are_off_unless_the_variable_is_set() -> None:
    from litetasks._store import faults

    assert os.environ.get(faults.ENV) is None and faults.ACTIVE is False


def test_a_bad_fault_spec_names_the_points_and_actions() -> None:
    from litetasks._store.faults import parse

    with pytest.raises(ValueError, match=r"claim\.before_begin.*kill9, sigterm, raise, full"):
        parse("claim.later=kill9")
    with pytest.raises(ValueError, match="needs a point that holds the connection"):
        parse("run.before_call=full")
    assert parse("claim.after_update=kill9, record.before_commit=raise") == {
        "claim.after_update": "kill9",
        "record.before_commit": "raise",
    }
