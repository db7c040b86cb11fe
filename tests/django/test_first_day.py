"""What a new user trips over in the Django API (issue 14): a retry's due time, periodic
duplicates, arguments that are not JSON, and ``enqueue_on_commit``'s result."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from litetasks._django.compat import TaskResultStatus
from litetasks._django.results import from_us
from litetasks.testing import drain
from tests import feature_tasks

# -- item 2: a retry's due time ------------------------------------------------------------------


def test_between_attempts_the_result_shows_when_the_retry_is_due(backend: Any, tmp_path: Path):
    result = feature_tasks.slow_retry.enqueue(str(tmp_path))
    assert result.task.run_after is None

    assert drain() == 1  # the first attempt fails; the retry waits out its 0.3 s back-off
    result.refresh()

    assert result.status == TaskResultStatus.READY
    due = from_us(backend.store.get(result.id).run_after_us)
    assert result.last_attempted_at is not None and due is not None
    assert due - result.last_attempted_at >= timedelta(seconds=0.3)
    assert result.task.run_after == due
    assert backend.get_result(result.id).task.run_after == due


def test_arefresh_shows_the_due_time_too(backend: Any, tmp_path: Path):
    result = feature_tasks.slow_retry.enqueue(str(tmp_path))
    drain()

    asyncio.run(result.arefresh())

    assert result.status == TaskResultStatus.READY
    assert result.task.run_after == from_us(backend.store.get(result.id).run_after_us)
    assert result.task.run_after is not None
