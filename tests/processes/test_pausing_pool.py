"""A real ``litetasks run`` pool and a paused queue: it stops taking its tasks, and resumes."""

from __future__ import annotations

import time

import pytest

from litetasks._store.records import JobState
from tests import tasks
from tests.harness import Pool, report, stop, wait_for

pytestmark = pytest.mark.slow


def enqueue_in(pool: Pool, queue: str, label: str) -> str:
    job_id = tasks.tracked.using(queue_name=queue).enqueue(str(pool.side), label, 0.0).id
    pool.labels[job_id] = label
    return job_id


def test_a_pool_skips_a_paused_queue_until_it_is_resumed(pool: Pool) -> None:
    worker = pool.start(threads=2)
    pool.children(1)
    pool.wait_state(enqueue_in(pool, "emails", "before"), JobState.SUCCESSFUL)

    assert pool.store.pausing.pause_queue("emails")
    time.sleep(1.5)  # the pool's copy of the paused queues is at most a second old
    paused = [enqueue_in(pool, "emails", f"paused-{i}") for i in range(3)]
    pool.wait_state(enqueue_in(pool, "default", "served"), JobState.SUCCESSFUL)
    time.sleep(1.0)  # it had every chance to take them
    assert [pool.job(job_id).state for job_id in paused] == [JobState.READY] * 3
    assert pool.started()["paused-0"] == 0

    resumed = time.monotonic()
    assert pool.store.pausing.resume_queue("emails")
    wait_for(
        lambda: all(pool.job(job_id).state == JobState.SUCCESSFUL for job_id in paused),
        timeout_s=5,
        interval_s=0.02,
        what="the resumed queue's tasks to finish",
    )
    report("resume -> the paused queue's tasks finished", time.monotonic() - resumed)
    assert stop(worker) == 0
    pool.account()


def test_a_queue_paused_before_the_pool_starts_stays_paused(pool: Pool) -> None:
    pool.store.pausing.pause_queue("reports")
    waiting = enqueue_in(pool, "reports", "waiting")
    worker = pool.start()
    pool.children(1)
    pool.wait_state(enqueue_in(pool, "default", "served"), JobState.SUCCESSFUL)
    time.sleep(1.0)
    assert pool.job(waiting).state == JobState.READY
    assert stop(worker) == 0
    pool.account()
