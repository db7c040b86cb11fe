"""A paused periodic schedule: the scheduler enqueues none of its slots until it is resumed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from litetasks._django.compat import task_backends
from litetasks._django.periodic import load_schedules
from litetasks._runtime.scheduler import Scheduler

from .test_periodic import ADD, Clock, jobs_of


@pytest.fixture
def backend(queue_path: Path) -> Iterator[Any]:
    setting = {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "OPTIONS": {
                "path": str(queue_path),
                "periodic": {
                    "sum": {"task": ADD, "every": 60, "args": [1, 2]},
                    "other": {"task": ADD, "every": 60, "args": [3, 4]},
                },
            },
        }
    }
    with override_settings(TASKS=setting):
        yield task_backends["default"]


def test_a_paused_schedule_skips_its_slots_and_resumes_at_the_next(backend, queue_path: Path):  # type: ignore[no-untyped-def]
    clock = Clock(datetime(2026, 5, 1, 10, 0, 30, tzinfo=timezone.utc))
    scheduler = Scheduler(backend, load_schedules(backend), clock=clock)
    scheduler.tick()
    backend.store.pausing.pause_schedule("sum")
    clock.advance(seconds=30)
    scheduler.tick()  # 10:01: only the other schedule's slot
    clock.advance(seconds=60)
    scheduler.tick()  # 10:02: the same
    assert [args for args, _ in jobs_of(queue_path)] == ["[3, 4]", "[3, 4]"]
    backend.store.pausing.resume_schedule("sum")
    scheduler.tick()  # the missed slots are not caught up
    assert len(jobs_of(queue_path)) == 2
    clock.advance(seconds=60)
    scheduler.tick()  # 10:03: both
    assert sorted(args for args, _ in jobs_of(queue_path)[2:]) == ["[1, 2]", "[3, 4]"]
