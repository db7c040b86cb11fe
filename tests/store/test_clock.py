"""Wall-clock jumps: a job never becomes unclaimable, a deferred job never starts early."""

from __future__ import annotations

from pathlib import Path

from litetasks._store.records import NewJob
from litetasks._store.store import Store

HOUR_US = 3_600_000_000


class Clock:
    def __init__(self, now_us: int) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us


def test_a_clock_stepped_back_an_hour_does_not_strand_jobs_enqueued_before(
    tmp_path: Path,
) -> None:
    clock = Clock(10 * HOUR_US)
    store = Store(tmp_path / "q.sqlite3", clock=clock)
    store.enqueue([NewJob(job_id="before-the-step", task_path="tests.tasks.noop")])
    clock.now_us -= HOUR_US  # NTP, or a VM resumed from a snapshot

    assert [job.job_id for job in store.claim("w")] == ["before-the-step"]


def test_a_clock_step_back_still_never_starts_a_deferred_job_early(tmp_path: Path) -> None:
    clock = Clock(10 * HOUR_US)
    store = Store(tmp_path / "q.sqlite3", clock=clock)
    store.enqueue(
        [NewJob(job_id="later", task_path="tests.tasks.noop", run_after_us=clock.now_us + 60)]
    )
    clock.now_us -= HOUR_US
    assert store.claim("w") == []
    clock.now_us += HOUR_US + 60
    assert [job.job_id for job in store.claim("w")] == ["later"]


def test_a_clock_jumped_forward_an_hour_runs_due_jobs_once_in_order(tmp_path: Path) -> None:
    clock = Clock(10 * HOUR_US)
    store = Store(tmp_path / "q.sqlite3", clock=clock)
    store.enqueue([NewJob(job_id=f"j{i}", task_path="tests.tasks.noop") for i in range(3)])
    clock.now_us += HOUR_US
    claimed = store.claim("w", limit=10)
    assert [job.job_id for job in claimed] == ["j0", "j1", "j2"]
    assert store.claim("w", limit=10) == []
