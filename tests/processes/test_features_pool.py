"""The features beyond DEP 0014 under a real ``litetasks run``: retries wait out their back-off
in a sleeping pool, hooks run, and old results are pruned in the background."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from litetasks._django.compat import TaskResultStatus
from tests import feature_tasks, tasks
from tests.harness import FAST, Pool, stop, wait_for

pytestmark = pytest.mark.slow


def test_a_sleeping_pool_wakes_for_a_retry_after_its_backoff(
    open_pool: Callable[..., Pool], tmp_path: Path
) -> None:
    pool = open_pool(**FAST)
    folder = tmp_path / "marks"
    folder.mkdir()
    worker = pool.start()
    pool.children(1)

    result = feature_tasks.slow_retry.enqueue(str(folder))  # fails twice, 0.3 s apart

    def finished() -> bool:
        result.refresh()
        return result.is_finished

    wait_for(finished, timeout_s=20, what="the retried task to finish")
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 3
    assert len(result.worker_ids) == 3 == len(result.errors) + 1
    stamps = sorted(p.stat().st_mtime for p in folder.iterdir())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.29 <= gap < 1.5 for gap in gaps), gaps  # woken by the due time, not a poll
    assert stop(worker) == 0


def test_hooks_run_in_the_pool(open_pool: Callable[..., Pool], tmp_path: Path) -> None:
    pool = open_pool(**FAST)
    worker = pool.start()
    pool.children(1)

    result = feature_tasks.with_success_hook.enqueue(5)

    def hook_done() -> list[str]:
        return [
            job_id
            for job_id, state in pool.store._db.execute(
                "SELECT job_id, state FROM jobs WHERE task_path = ?",
                (feature_tasks.hook_record.module_path,),
            )
            if state == "SUCCESSFUL"
        ]

    [hook_id] = wait_for(hook_done, timeout_s=20, what="the hook to run")
    assert pool.backend.get_result(hook_id).return_value == result.id
    assert stop(worker) == 0


def test_the_pool_prunes_results_older_than_results_ttl(open_pool: Callable[..., Pool]) -> None:
    pool = open_pool(**FAST, results_ttl=1)
    worker = pool.start()
    pool.children(1)

    done = [tasks.noop.enqueue() for _ in range(20)]
    wait_for(
        lambda: pool.store.counts() and all(state.is_finished for _, state in pool.store.counts()),
        timeout_s=20,
        what="the tasks to run",
    )
    wait_for(lambda: not pool.store.counts(), timeout_s=20, what="the results to be pruned")
    assert len(done) == 20
    assert stop(worker) == 0
