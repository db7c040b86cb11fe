"""Periodic tasks under real ``litetasks run`` supervisors: two of them on one queue file
enqueue every slot once, and the tasks run."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest

from tests.harness import FAST, Pool, stop, wait_for

pytestmark = pytest.mark.slow


def test_two_supervisors_enqueue_each_periodic_slot_once(open_pool: Callable[..., Pool]) -> None:
    pool = open_pool(**FAST, periodic={"tick": {"task": "tests.tasks.noop", "every": 1}})
    first, second = pool.start(), pool.start()
    pool.children(2)

    def enqueued() -> list[int]:
        return [
            int(t)
            for (t,) in pool.store._db.execute(
                "SELECT enqueued_at FROM jobs WHERE task_path = 'tests.tasks.noop' ORDER BY seq"
            )
        ]

    began = time.monotonic()
    wait_for(lambda: len(enqueued()) >= 4, timeout_s=30, what="four periodic slots")
    elapsed = time.monotonic() - began
    assert stop(first) == 0
    assert stop(second) == 0

    stamps = enqueued()
    gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(stamps)]
    assert all(gap > 0.5 for gap in gaps), gaps  # one job per one-second slot, never two
    assert len(stamps) <= elapsed + 3
    slot, job_id = pool.store.schedules()["tick"]
    assert slot % 1_000_000 == 0  # slots are whole seconds
    assert job_id is not None
    states = {state for (state,) in pool.store._db.execute("SELECT state FROM jobs")}
    assert "SUCCESSFUL" in states  # and the pool ran them
