"""What a new user trips over in the Django API (issue 14): a retry's due time, periodic
duplicates, arguments that are not JSON, and ``enqueue_on_commit``'s result."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from django.db import models, transaction
from django.test import override_settings

from litetasks import enqueue_on_commit, periodic
from litetasks._django.backend import SQLiteBackend
from litetasks._django.compat import TaskResultStatus, task_enqueued
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


# -- item 12: arguments that are not JSON ---------------------------------------------------------


class Order(models.Model):
    class Meta:
        app_label = "tests"


ISO = "pass an ISO string (value.isoformat()) and read it in the task with"
JSON = "pass JSON values (str, int, float, bool, None, and lists and dicts of them) or an id"


@pytest.mark.parametrize(
    ("args", "kwargs", "where", "what", "fix"),
    [
        ((Order(pk=7),), {}, "args[0]",
         "a model instance (tests.django.test_first_day.Order)",
         "pass its primary key (obj.pk) and load the object in the task."),
        ((), {"order": Order(pk=7)}, 'kwargs["order"]',
         "a model instance (tests.django.test_first_day.Order)",
         "pass its primary key (obj.pk) and load the object in the task."),
        ((1,), {"when": datetime(2030, 1, 1, tzinfo=timezone.utc)}, 'kwargs["when"]',
         "a datetime (datetime.datetime)", f"{ISO} datetime.fromisoformat()."),
        ((date(2030, 1, 1),), {}, "args[0]", "a date (datetime.date)",
         f"{ISO} date.fromisoformat()."),
        ((), {"items": [{"sku": "a", "price": Decimal("9.99")}]}, 'kwargs["items"][0]["price"]',
         "a Decimal (decimal.Decimal)", "pass str(value) and read it in the task with "
         "Decimal(...)."),
        (("x", UUID(int=1)), {}, "args[1]", "a UUID (uuid.UUID)",
         "pass str(value) and read it in the task with UUID(...)."),
        (({"ids": {1, 2}},), {}, 'args[0]["ids"]', "a set", "pass a list (sorted(value))."),
        ((b"\xff",), {}, "args[0]", "bytes that are not UTF-8 text",
         "pass base64.b64encode(value).decode() and decode it in the task."),
        ((object(),), {}, "args[0]", "an object", f"{JSON} to load the object in the task."),
    ],
)  # fmt: skip
def test_an_argument_that_is_not_json_is_named_with_what_to_pass_instead(
    backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any], where: str, what: str, fix: str
) -> None:
    with pytest.raises((TypeError, ValueError)) as raised:
        tasks.echo.enqueue(*args, **kwargs)
    assert str(raised.value) == (
        f"{where} of tests.tasks.echo is {what}, which JSON cannot store: {fix} Nothing was "
        "enqueued."
    )
    assert backend.store.counts() == {}


def test_enqueue_on_commit_names_the_argument_that_is_not_json(backend: Any) -> None:
    with (
        pytest.raises(TypeError, match=re.escape('kwargs["order"] of tests.tasks.echo is a model')),
        transaction.atomic(),
    ):
        enqueue_on_commit(tasks.echo, order=Order(pk=7))
    assert backend.store.counts() == {}


# -- item 14: enqueue_on_commit's result ----------------------------------------------------------


def test_enqueue_on_commit_outside_a_transaction_returns_the_result(backend: Any) -> None:
    result = enqueue_on_commit(tasks.add, 1, 2)

    assert result is not None
    assert result.status == TaskResultStatus.READY
    assert backend.get_result(result.id).args == [1, 2]


def test_enqueue_on_commit_inside_a_transaction_returns_none_and_enqueues_at_the_commit(
    backend: Any,
) -> None:
    enqueued: list[Any] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        enqueued.append(task_result)

    task_enqueued.connect(receiver)
    try:
        with transaction.atomic():
            assert enqueue_on_commit(tasks.add, 1, 2) is None
            assert enqueued == []
    finally:
        task_enqueued.disconnect(receiver)
    [result] = enqueued
    assert backend.get_result(result.id).status == TaskResultStatus.READY


# -- item 4: the litetasks app (the real `manage.py check` runs are in test_project_setup.py) -----


def test_a_backend_made_without_the_app_logs_it_once_unless_silenced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = {"OPTIONS": {"path": str(tmp_path / "q.sqlite3")}}
    with override_settings(INSTALLED_APPS=["tests"]):
        SQLiteBackend("no-app", options)
        SQLiteBackend("no-app", options)
        with override_settings(SILENCED_SYSTEM_CHECKS=["litetasks.W003"]):
            SQLiteBackend("silenced", options)
    assert [r.getMessage() for r in caplog.records] == [
        "TASKS['no-app'] uses litetasks, but \"litetasks\" is not in INSTALLED_APPS: tasks are "
        "stored, but `python manage.py runserver` does not run them and `python manage.py "
        'litetasks` does not exist (the `litetasks` command still works). Add "litetasks" to '
        "INSTALLED_APPS. (litetasks.W003)"
    ]
