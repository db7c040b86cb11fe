"""Times a queue file holds: refused at enqueue when out of range, converted without fail.

A ``run_after`` before year 1 or after year 9999 in UTC used to be stored, and then raised
``OverflowError`` in every worker that claimed it (taking the tasks claimed with it down too),
and in every ``refresh()``. Now such a time is refused where it enters, and every conversion of a
stored time is total: a row written by other code with any integer in it converts to the nearest
time a queue file holds, in any time zone, with ``USE_TZ`` on or off.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from litetasks import enqueue_many
from litetasks._cli.status import status_data
from litetasks._django.backend import SQLiteBackend
from litetasks._django.compat import InvalidTask, TaskResultStatus, task_backends
from litetasks._django.periodic import Schedule, datetime_at, load_schedules
from litetasks._django.results import from_us, to_us
from litetasks._runtime.scheduler import Scheduler
from litetasks._store.clock import EARLIEST_US, LATEST_US
from litetasks._store.records import NewJob
from litetasks._store.store import Store
from litetasks.exceptions import ConfigurationError
from tests import tasks

UTC = timezone.utc
BEFORE_YEAR_1 = datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))  # 0000-12-31 19:00 UTC
AFTER_YEAR_9999 = datetime.max.replace(tzinfo=timezone(timedelta(hours=-5)))  # 10000-01-01 UTC
EXTREME_INTEGERS = [
    -(2**63),
    EARLIEST_US - 1,
    EARLIEST_US,
    -1,
    0,
    1_700_000_000_000_000,
    LATEST_US,
    LATEST_US + 1,
    2**63 - 1,
]
FAR_ZONES = ["UTC", "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Manila", "America/Sitka"]


@pytest.fixture
def periodic_backend(queue_path: Path) -> Iterator[Callable[[dict[str, Any]], SQLiteBackend]]:
    """Return ``configure(schedules)``: the default backend with OPTIONS["periodic"]."""
    managers: list[Any] = []

    def configure(schedules: dict[str, Any]) -> SQLiteBackend:
        options = {"path": str(queue_path), "periodic": schedules}
        manager = override_settings(
            TASKS={"default": {"BACKEND": "litetasks.backend.SQLiteBackend", "OPTIONS": options}}
        )
        manager.enable()
        managers.append(manager)
        return task_backends["default"]  # type: ignore[no-any-return]

    yield configure
    for manager in reversed(managers):
        manager.disable()


def stored_jobs(backend: SQLiteBackend) -> int:
    return int(backend.store._db.execute("SELECT count(*) FROM jobs").get)


# -- refused where they enter ------------------------------------------------------------------


@pytest.mark.parametrize("run_after", [BEFORE_YEAR_1, AFTER_YEAR_9999], ids=["min", "max"])
def test_a_run_after_outside_the_stored_years_is_refused_with_nothing_stored(
    backend: SQLiteBackend, run_after: datetime
) -> None:
    with pytest.raises(InvalidTask, match="outside the times a queue file holds") as refused:
        tasks.noop.using(run_after=run_after).enqueue()

    assert str(refused.value) == (
        f"run_after of 'tests.tasks.noop' is {run_after.isoformat()!r}, outside the times a "
        "queue file holds (0001-01-02 to 9999-12-30 UTC, so that every worker can read it in "
        "any time zone). Pass a datetime in that range, or none to run the task as soon as "
        "possible."
    )
    assert stored_jobs(backend) == 0


@pytest.mark.parametrize("run_after", [BEFORE_YEAR_1, AFTER_YEAR_9999], ids=["min", "max"])
def test_enqueue_and_enqueue_many_refuse_a_task_whose_run_after_skipped_validation(
    backend: SQLiteBackend, run_after: datetime
) -> None:
    # A Task changed behind Django's back (its __post_init__ checks never ran).
    task = copy.copy(tasks.noop)
    object.__setattr__(task, "run_after", run_after)

    with pytest.raises(InvalidTask, match="outside the times a queue file holds"):
        task.enqueue()
    with pytest.raises(InvalidTask, match="outside the times a queue file holds"):
        enqueue_many(task, [(), ()])
    assert stored_jobs(backend) == 0


@pytest.mark.parametrize("use_tz", [True, False])
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Etc/GMT+12"])
def test_a_run_after_at_the_ends_of_datetime_is_refused_in_a_far_time_zone(
    backend: SQLiteBackend, use_tz: bool, zone: str
) -> None:
    with override_settings(USE_TZ=use_tz, TIME_ZONE=zone):
        edge = datetime.min if zone == "Pacific/Kiritimati" else datetime.max
        if use_tz:
            edge = edge.replace(tzinfo=ZoneInfo(zone))
        with pytest.raises(InvalidTask, match="outside the times a queue file holds"):
            tasks.noop.using(run_after=edge)
    assert stored_jobs(backend) == 0


def test_the_first_and_last_times_a_queue_file_holds_round_trip(backend: SQLiteBackend) -> None:
    first = datetime(1, 1, 2, tzinfo=UTC)
    last = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)

    results = [tasks.noop.using(run_after=moment).enqueue() for moment in (first, last)]

    assert [to_us(first), to_us(last)] == [EARLIEST_US, LATEST_US]
    for result, moment in zip(results, (first, last), strict=True):
        result.refresh()
        assert result.task.run_after == moment
        assert result.status == TaskResultStatus.READY


@pytest.mark.parametrize("run_after_us", [EARLIEST_US - 1, LATEST_US + 1, -(2**63)])
def test_the_store_refuses_a_run_after_it_cannot_hold(tmp_path: Path, run_after_us: int) -> None:
    with Store(tmp_path / "tasks.sqlite3") as store:
        jobs = [
            NewJob(job_id="fine", task_path="tests.tasks.noop"),
            NewJob(job_id="bad", task_path="tests.tasks.noop", run_after_us=run_after_us),
        ]
        with pytest.raises(ValueError, match="outside the times a queue file holds"):
            store.enqueue(jobs)
        with pytest.raises(ValueError, match="outside the times a queue file holds"):
            store.enqueue_slot("hourly", run_after_us, jobs[0])
        assert store.counts() == {}


# -- every conversion of a stored time is total ------------------------------------------------


@pytest.mark.parametrize("use_tz", [True, False])
@pytest.mark.parametrize("zone", FAR_ZONES)
def test_from_us_converts_any_stored_integer(use_tz: bool, zone: str) -> None:
    with override_settings(USE_TZ=use_tz, TIME_ZONE=zone):
        converted = [from_us(value) for value in EXTREME_INTEGERS]
        assert all(moment is not None for moment in converted)
        assert converted == sorted(converted)  # type: ignore[type-var]
        assert from_us(EARLIEST_US - 1) == from_us(EARLIEST_US) == from_us(-(2**63))
        assert from_us(LATEST_US + 1) == from_us(LATEST_US) == from_us(2**63 - 1)
        assert to_us(from_us(0)) == 0  # type: ignore[arg-type]
        assert to_us(from_us(LATEST_US)) == LATEST_US  # type: ignore[arg-type]


@pytest.mark.parametrize("zone", FAR_ZONES)
@pytest.mark.parametrize("cron", ["0 6 * * *", "59 23 31 12 *", "0 0 1 1 *"])
def test_cron_slots_of_any_stored_integer_never_raise(zone: str, cron: str) -> None:
    schedule = Schedule(name="s", task_path="tests.tasks.noop", cron=cron, tz=ZoneInfo(zone))
    for value in EXTREME_INTEGERS:
        for slot in (schedule.next_slot(value), schedule.latest_slot(value)):
            assert slot is None or EARLIEST_US - 86400 * 10**6 <= slot <= LATEST_US
        datetime_at(value, ZoneInfo(zone)).isoformat()


def test_interval_slots_stay_inside_the_stored_years() -> None:
    schedule = Schedule(name="s", task_path="tests.tasks.noop", every_s=365 * 86400.0)
    assert schedule.next_slot(LATEST_US) is None
    assert schedule.next_slot(0) == 365 * 86400 * 10**6


def test_an_interval_longer_than_a_thousand_years_is_refused(periodic_backend: Any) -> None:
    backend = periodic_backend({"long": {"task": "tests.tasks.noop", "every": 10**12}})
    with pytest.raises(ConfigurationError, match="at least 1 and at most 1000 years"):
        load_schedules(backend)


@pytest.mark.parametrize("bad_slot", ["'noon'", str(2**62), str(-(2**62)), "1.5"])
@pytest.mark.parametrize("use_tz", [True, False])
def test_a_stored_slot_written_by_other_code_is_replaced_by_the_next_one(
    periodic_backend: Any, bad_slot: str, use_tz: bool
) -> None:
    backend = periodic_backend(
        {"daily": {"task": "tests.tasks.noop", "cron": "0 6 * * *", "timezone": "Etc/GMT+12"}}
    )
    clock = [1_700_000_000_000_000]
    with override_settings(USE_TZ=use_tz, TIME_ZONE="Pacific/Kiritimati"):
        scheduler = Scheduler(backend, load_schedules(backend), clock=lambda: clock[0])
        backend.store._db.execute(
            "INSERT INTO schedules (name, last_slot, last_job_id, updated_at)"
            f" VALUES ('daily', {bad_slot}, NULL, 0)"
        )
        assert backend.store.schedules() == {}
        assert status_data(backend)["periodic"][0]["last_slot"] is None

        wait_s = scheduler.tick()  # a new schedule: its first slot is the next one
        next_slot = scheduler.schedules["daily"].next_slot(clock[0])
        assert next_slot is not None
        assert wait_s == min(60.0, (next_slot - clock[0]) / 1e6)
        clock[0] = next_slot
        scheduler.tick()

        [(slot, job_id)] = backend.store.schedules().values()
        assert slot == next_slot
        assert backend.get_result(str(job_id)).status == TaskResultStatus.READY
        assert status_data(backend)["periodic"][0]["last_job_id"] == job_id
