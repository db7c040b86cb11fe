"""What a new user trips over in the Django API (issue 14): a retry's due time, periodic
duplicates, arguments that are not JSON, and ``enqueue_on_commit``'s result."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from litetasks import periodic
from litetasks._django.compat import TaskResultStatus
from litetasks._django.periodic import _declared
from litetasks._django.results import from_us
from litetasks.exceptions import ConfigurationError
from litetasks.testing import drain
from tests import feature_tasks, tasks

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


# -- item 7: two periodic() calls on one task -----------------------------------------------------


@pytest.fixture
def declared() -> Iterator[None]:
    yield
    _declared.clear()


@pytest.mark.usefixtures("declared")
def test_a_second_schedule_of_one_task_without_its_own_name_is_refused() -> None:
    periodic(tasks.noop, every=timedelta(minutes=5))

    with pytest.raises(ConfigurationError) as raised:
        periodic(tasks.noop, cron="0 6 * * *")

    assert str(raised.value) == (
        "periodic(tests.tasks.noop): a schedule named 'tests.tasks.noop' is already declared "
        "(every 0:05:00); this one (cron '0 6 * * *' (UTC)) would replace it. Give each "
        "schedule of a task after the first its own name=, such as periodic(tests.tasks.noop, "
        "..., name='tests.tasks.noop-2')."
    )
    assert [s.every_s for s in _declared["default"].values()] == [300]


@pytest.mark.usefixtures("declared")
def test_schedules_with_their_own_names_and_a_repeated_identical_one_are_kept() -> None:
    periodic(tasks.noop, every=timedelta(minutes=5))
    periodic(tasks.noop, every=timedelta(minutes=5))  # a module imported twice: the same one
    periodic(tasks.noop, cron="0 6 * * *", name="noop-daily")

    assert sorted(_declared["default"]) == ["noop-daily", "tests.tasks.noop"]
