"""Periodic tasks: slots from cron expressions (time zones, DST) and intervals, validation, each
slot enqueued once (also by two schedulers, and by two real supervisors), no catch-up storm."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import apsw
import pytest
from django.test import override_settings
from typer.testing import CliRunner

from litetasks import periodic as declare
from litetasks._cli.status import status_data
from litetasks._django.compat import task_backends, task_enqueued
from litetasks._django.periodic import Schedule, _declared, load_schedules
from litetasks._runtime.scheduler import Scheduler
from litetasks.cli import app
from litetasks.exceptions import ConfigurationError
from tests import tasks

BERLIN = ZoneInfo("Europe/Berlin")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ADD = "tests.tasks.add"


def us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def local(value: int, tz: Any = BERLIN) -> str:
    return (EPOCH + timedelta(microseconds=value)).astimezone(tz).isoformat()


def following(schedule: Schedule, start: datetime, count: int) -> list[str]:
    slots, at = [], us(start)
    for _ in range(count):
        at = schedule.next_slot(at)
        slots.append(local(at, schedule.tz))
    return slots


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.now = us(moment)

    def __call__(self) -> int:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta) // timedelta(microseconds=1)


@pytest.fixture
def periodic_backend(queue_path: Path) -> Iterator[Callable[..., Any]]:
    """Return ``configure(schedules)``: the default backend with OPTIONS["periodic"]."""
    with_settings: list[Any] = []

    def configure(schedules: dict[str, Any]) -> Any:
        setting = {
            "default": {
                "BACKEND": "litetasks.backend.SQLiteBackend",
                "QUEUES": ["default", "emails", "reports"],
                "OPTIONS": {"path": str(queue_path), "periodic": schedules},
            }
        }
        manager = override_settings(TASKS=setting)
        manager.enable()
        with_settings.append(manager)
        return task_backends["default"]

    yield configure
    for manager in reversed(with_settings):
        manager.disable()


def jobs_of(queue_path: Path, task_path: str = ADD) -> list[tuple[str, int]]:
    with apsw.Connection(str(queue_path)) as db:
        return [
            (str(a), int(t))
            for a, t in db.execute(
                "SELECT args, enqueued_at FROM jobs WHERE task_path = ? ORDER BY seq", (task_path,)
            )
        ]


# -- slots ---------------------------------------------------------------------------------------


def test_a_daily_berlin_task_runs_at_six_local_across_both_dst_changes():
    daily = Schedule(name="d", task_path=ADD, cron="0 6 * * *", tz=BERLIN)
    spring = following(daily, datetime(2026, 3, 28, 12, tzinfo=BERLIN), 2)
    autumn = following(daily, datetime(2026, 10, 24, 12, tzinfo=BERLIN), 2)
    assert spring == ["2026-03-29T06:00:00+02:00", "2026-03-30T06:00:00+02:00"]
    assert autumn == ["2026-10-25T06:00:00+01:00", "2026-10-26T06:00:00+01:00"]
    assert following(daily, datetime(2026, 3, 27, 12, tzinfo=BERLIN), 1) == [
        "2026-03-28T06:00:00+01:00"
    ]


def test_a_slot_in_the_skipped_hour_runs_when_it_ends_and_a_repeated_hour_runs_once():
    night = Schedule(name="n", task_path=ADD, cron="30 2 * * *", tz=BERLIN)
    assert following(night, datetime(2026, 3, 28, 12, tzinfo=BERLIN), 2) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    assert following(night, datetime(2026, 10, 24, 12, tzinfo=BERLIN), 2) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]


def test_latest_slot_includes_a_slot_at_this_very_moment():
    hourly = Schedule(name="h", task_path=ADD, cron="0 * * * *")
    at = datetime(2026, 5, 1, 10, tzinfo=timezone.utc)
    assert hourly.latest_slot(us(at)) == us(at)
    assert hourly.latest_slot(us(at) - 1) == us(at - timedelta(hours=1))
    assert hourly.latest_slot(us(at) + 59 * 60 * 1_000_000) == us(at)


def test_interval_slots_are_aligned_to_the_epoch():
    every5 = Schedule(name="i", task_path=ADD, every_s=300)
    at = datetime(2026, 5, 1, 10, 7, 30, tzinfo=timezone.utc)
    assert local(every5.latest_slot(us(at)), timezone.utc) == "2026-05-01T10:05:00+00:00"
    assert local(every5.next_slot(us(at)), timezone.utc) == "2026-05-01T10:10:00+00:00"


# -- declaring -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"task": ADD, "cron": "61 * * * *"}, "bad cron expression '61 * * * *'"),
        ({"task": ADD}, "give either cron or every"),
        ({"task": ADD, "cron": "* * * * *", "every": 60}, "give either cron or every"),
        ({"task": ADD, "every": 0.5}, "every must be a timedelta or seconds, at least 1"),
        ({"task": ADD, "cron": "0 6 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"task": ADD, "every": 60, "catch_up": "all"}, "catch_up must be 'latest'"),
        ({"task": ADD, "every": 60, "at": "noon"}, "unknown key(s) at"),
        ({"task": "tests.tasks.nothing_here", "every": 60}, "is not a task"),
        ({"task": "os.system", "every": 60}, "not in an installed app"),
        ({"task": ADD, "every": 60, "args": [object()]}, "cannot be enqueued"),
        ("0 6 * * *", "must be a dict with 'task'"),
    ],
)
def test_a_bad_schedule_is_refused_with_what_to_fix(periodic_backend, spec, message):
    backend = periodic_backend({"report": spec})
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        load_schedules(backend)


def test_litetasks_run_with_a_bad_schedule_exits_2_in_one_line(periodic_backend):
    periodic_backend({"report": {"task": ADD, "cron": "every day"}})
    result = CliRunner().invoke(app, ["run", "--processes", "1"], prog_name="litetasks")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "bad cron expression 'every day'" in result.stderr


def test_schedules_come_from_settings_and_from_code(periodic_backend):
    backend = periodic_backend({"nightly": {"task": ADD, "cron": "0 3 * * *", "args": [1, 2]}})
    declare(tasks.noop, every=timedelta(minutes=5))
    try:
        schedules = load_schedules(backend)
    finally:
        _declared.clear()
    assert sorted(schedules) == ["nightly", "tests.tasks.noop"]
    assert schedules["nightly"].args == (1, 2)
    assert schedules["tests.tasks.noop"].every_s == 300


def test_periodic_in_code_refuses_a_bad_expression_at_once():
    with pytest.raises(ConfigurationError, match="bad cron expression"):
        declare(tasks.noop, cron="0 25 * * *")


# -- enqueueing ----------------------------------------------------------------------------------


def test_each_slot_is_enqueued_once_when_due(periodic_backend, queue_path):
    backend = periodic_backend({"sum": {"task": ADD, "every": 60, "args": [1, 2]}})
    clock = Clock(datetime(2026, 5, 1, 10, 0, 30, tzinfo=timezone.utc))
    scheduler = Scheduler(backend, load_schedules(backend), clock=clock)

    assert scheduler.tick() == pytest.approx(30)  # a new schedule waits for its next slot
    assert jobs_of(queue_path) == []
    clock.advance(seconds=30)
    assert scheduler.tick() == pytest.approx(60)
    assert scheduler.tick() == pytest.approx(60)
    clock.advance(seconds=59)
    scheduler.tick()
    clock.advance(seconds=1)
    scheduler.tick()
    assert [args for args, _ in jobs_of(queue_path)] == ["[1, 2]", "[1, 2]"]
    slot, job_id = backend.store.schedules()["sum"]
    assert local(slot, timezone.utc) == "2026-05-01T10:02:00+00:00"
    assert backend.store.get(job_id).args_json == "[1, 2]"


def test_a_slot_signals_the_result_it_stored_with_its_enqueued_at(periodic_backend):
    # The scheduler's clock says when a slot is due; the store's clock stamps the job. The
    # task_enqueued signal carries the result as stored, as enqueue() does (it carried the
    # scheduler's tick time, which a stored result never showed).
    backend = periodic_backend({"sum": {"task": ADD, "every": 60, "args": [1, 2]}})
    clock = Clock(datetime(2026, 5, 1, 10, 0, 30, tzinfo=timezone.utc))
    scheduler = Scheduler(backend, load_schedules(backend), clock=clock)
    signalled: list[Any] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        signalled.append(task_result)

    task_enqueued.connect(receiver, weak=False)
    try:
        clock.advance(seconds=30)
        scheduler.tick()
    finally:
        task_enqueued.disconnect(receiver)

    [result] = signalled
    stored = backend.get_result(result.id)
    assert (result.status, result.args) == (stored.status, stored.args)
    assert result.enqueued_at == stored.enqueued_at


def test_two_schedulers_racing_on_one_file_enqueue_every_slot_once(periodic_backend, queue_path):
    backend = periodic_backend({"sum": {"task": ADD, "every": 60}})
    schedules = load_schedules(backend)
    start = datetime(2026, 5, 1, 10, 0, 0, 1, tzinfo=timezone.utc)
    minutes = 40
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def supervise() -> None:
        clock = Clock(start)
        scheduler = Scheduler(backend, schedules, clock=clock)  # each thread: own connection
        try:
            for _ in range(minutes):
                clock.advance(minutes=1)
                barrier.wait(timeout=10)
                scheduler.tick()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=supervise) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(jobs_of(queue_path)) == minutes


def test_after_downtime_missed_slots_run_once(periodic_backend, queue_path):
    backend = periodic_backend({"sum": {"task": ADD, "every": 60}})
    schedules = load_schedules(backend)
    clock = Clock(datetime(2026, 5, 1, 10, 0, 30, tzinfo=timezone.utc))
    scheduler = Scheduler(backend, schedules, clock=clock)
    scheduler.tick()
    clock.advance(seconds=30)
    scheduler.tick()
    assert len(jobs_of(queue_path)) == 1

    clock.advance(hours=3)  # the pool was down: 180 slots missed
    Scheduler(backend, schedules, clock=clock).tick()
    assert len(jobs_of(queue_path)) == 2


def test_catch_up_none_skips_missed_slots_and_runs_the_next_one(periodic_backend, queue_path):
    backend = periodic_backend({"sum": {"task": ADD, "every": 300, "catch_up": "none"}})
    schedules = load_schedules(backend)
    clock = Clock(datetime(2026, 5, 1, 10, 0, 30, tzinfo=timezone.utc))
    scheduler = Scheduler(backend, schedules, clock=clock)
    scheduler.tick()
    clock.advance(seconds=270)
    scheduler.tick()
    assert len(jobs_of(queue_path)) == 1

    clock.advance(hours=3, minutes=2)  # down for 3 h; the latest slot passed 2 min ago
    restarted = Scheduler(backend, schedules, clock=clock)
    restarted.tick()
    assert len(jobs_of(queue_path)) == 1  # missed slots are skipped
    clock.advance(minutes=3)
    restarted.tick()
    assert len(jobs_of(queue_path)) == 2  # the next one runs


def test_clock_jumps_cause_no_burst(periodic_backend, queue_path):
    backend = periodic_backend({"sum": {"task": ADD, "every": 60}})
    clock = Clock(datetime(2026, 5, 1, 10, 0, 30, tzinfo=timezone.utc))
    scheduler = Scheduler(backend, load_schedules(backend), clock=clock)
    clock.advance(seconds=30)
    scheduler.tick()
    clock.advance(hours=-1)  # NTP steps the clock back an hour
    for _ in range(60):
        clock.advance(minutes=1)
        scheduler.tick()
    assert len(jobs_of(queue_path)) == 1  # slots already passed are not run again
    clock.advance(hours=1)
    scheduler.tick()
    assert len(jobs_of(queue_path)) == 2  # forward: one run, not sixty


def test_a_unique_periodic_task_skips_a_slot_while_its_last_run_is_live(
    periodic_backend, queue_path
):
    backend = periodic_backend(
        {"u": {"task": "tests.feature_tasks.unique_by_arguments", "every": 60, "args": [1]}}
    )
    clock = Clock(datetime(2026, 5, 1, 10, 0, 30, tzinfo=timezone.utc))
    scheduler = Scheduler(backend, load_schedules(backend), clock=clock)
    for _ in range(3):
        clock.advance(minutes=1)
        scheduler.tick()
    path = "tests.feature_tasks.unique_by_arguments"
    assert len(jobs_of(queue_path, path)) == 1  # the first is still READY: later slots skipped
    assert local(backend.store.schedules()["u"][0], timezone.utc) == "2026-05-01T10:03:00+00:00"


def test_status_lists_schedules_with_their_next_run(periodic_backend):
    backend = periodic_backend(
        {"digest": {"task": ADD, "cron": "0 6 * * *", "timezone": "Europe/Berlin"}}
    )
    [row] = status_data(backend)["periodic"]
    assert row["name"] == "digest"
    assert row["schedule"] == "cron '0 6 * * *' (Europe/Berlin)"
    assert row["next_run"].endswith(("T06:00:00+01:00", "T06:00:00+02:00"))
    assert row["next_run_utc"].endswith(("T05:00:00+00:00", "T04:00:00+00:00"))
    assert row["last_slot"] is None


def test_a_new_schedule_starting_exactly_on_a_slot_runs_it(periodic_backend, queue_path):
    backend = periodic_backend({"sum": {"task": ADD, "every": 60}})
    clock = Clock(datetime(2026, 5, 1, 10, 0, 0, tzinfo=timezone.utc))
    Scheduler(backend, load_schedules(backend), clock=clock).tick()
    assert len(jobs_of(queue_path)) == 1


def test_the_in_process_scheduler_thread_enqueues_and_stops(periodic_backend, queue_path):
    from litetasks._runtime.scheduler import start_scheduler_thread
    from tests.harness import wait_for

    backend = periodic_backend({"tick": {"task": ADD, "every": 1, "args": [2, 3]}})
    stopping = threading.Event()
    thread = start_scheduler_thread(backend, stopping.is_set)
    assert thread is not None
    wait_for(lambda: jobs_of(queue_path), timeout_s=10, what="a periodic job")
    stopping.set()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_the_in_process_scheduler_logs_a_bad_schedule_and_runs_nothing(periodic_backend, caplog):
    from litetasks._runtime.scheduler import start_scheduler_thread

    backend = periodic_backend({"tick": {"task": ADD, "cron": "nope"}})
    assert start_scheduler_thread(backend, lambda: False) is None
    assert "periodic tasks are off" in caplog.text
