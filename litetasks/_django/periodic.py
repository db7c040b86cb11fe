"""Periodic tasks: cron expressions (in a time zone) and fixed intervals, enqueued by the pool.

Declare them in code, in an installed app's ``tasks`` module::

    from litetasks import periodic

    periodic(send_digest, cron="0 6 * * *", timezone="Europe/Berlin")
    periodic(poll_feeds, every=timedelta(minutes=5))

or in settings::

    TASKS["default"]["OPTIONS"]["periodic"] = {
        "digest": {"task": "news.tasks.send_digest", "cron": "0 6 * * *"},
    }

``litetasks run`` (the supervisor) and the ``runserver`` autorun pool
enqueue each slot when it is due. Each slot is enqueued once, however many supervisors share
the queue file: the store records the last slot per schedule in the transaction that inserts
its task. After downtime, missed slots run once (the latest), or not at all with
``catch_up="none"``; a new schedule starts with the next slot after the pool starts.

Cron expressions are parsed and walked by ``cronsim`` (Debian cron's rules, DST included: a
slot in the hour skipped in spring runs when that hour ends, and a slot in the hour repeated in
autumn runs once).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .._store.clock import LATEST_US, clamp_us
from .._store.store import wall_clock_us
from ..exceptions import ConfigurationError, StoreError

if TYPE_CHECKING:
    from .backend import SQLiteBackend
    from .compat import Task

__all__ = [
    "CATCH_UP",
    "Schedule",
    "Scheduler",
    "load_schedules",
    "periodic",
    "start_scheduler_thread",
]

logger = logging.getLogger(__name__)

CATCH_UP = ("latest", "none")
# With catch_up="none", a slot is still run if the pool notices it this late (seconds).
ON_TIME_S = 60.0
# The longest ``every``: a thousand years, so that every slot is a time a queue file holds.
MAX_EVERY_S = 1000 * 365.25 * 86400
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Schedules declared in code with periodic(), per backend alias, by name.
_declared: dict[str, dict[str, Schedule]] = {}
_declared_lock = threading.Lock()


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """One periodic task: when (``cron`` in ``tz``, or ``every_s`` seconds), what, and how."""

    name: str
    task_path: str
    cron: str | None = None
    every_s: float | None = None
    tz: ZoneInfo | timezone = timezone.utc
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    catch_up: str = "latest"

    @property
    def description(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.tz})"
        return f"every {timedelta(seconds=self.every_s or 0)}"

    def latest_slot(self, now_us: int) -> int | None:
        """The most recent slot at or before ``now_us`` (µs since the epoch), if any."""
        if self.every_s is not None:
            period = int(self.every_s * 1_000_000)
            return now_us - now_us % period
        assert self.cron is not None
        # cronsim walks whole seconds and excludes its starting point.
        start = datetime_at(now_us, self.tz).replace(microsecond=0)
        try:
            return _slot(next(CronSim(self.cron, start + timedelta(seconds=1), reverse=True)))
        except (StopIteration, OverflowError, ValueError):  # no slot within datetime's years
            return None

    def next_slot(self, after_us: int) -> int | None:
        """The first slot strictly after ``after_us``, if any."""
        if self.every_s is not None:
            period = int(self.every_s * 1_000_000)
            following = after_us - after_us % period + period
            return None if following > LATEST_US else following
        assert self.cron is not None
        start = datetime_at(after_us, self.tz).replace(microsecond=0)
        try:
            return _slot(next(CronSim(self.cron, start)))
        except (StopIteration, OverflowError, ValueError):  # no slot within datetime's years
            return None


def periodic(
    task: Task,
    *,
    cron: str | None = None,
    every: timedelta | float | None = None,
    timezone: str | None = None,
    name: str | None = None,
    args: Iterable[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    catch_up: str = "latest",
) -> Task:
    """Run ``task`` on a schedule: ``cron="0 6 * * *"`` (in ``timezone``, default
    ``settings.TIME_ZONE``) or ``every=timedelta(minutes=5)`` (aligned to the epoch).

    Call it at module level in an installed app's ``tasks`` module; ``litetasks run`` finds
    it there. ``name`` (default: the task's path) identifies the schedule in the queue file:
    renaming it starts a new schedule. Returns ``task``, so it also works as a decorator
    argument. Raises ``ConfigurationError`` for a bad expression, interval or time zone.
    """
    schedule = _schedule(
        name or task.module_path,
        task.module_path,
        {
            "cron": cron,
            "every": every,
            "timezone": timezone,
            "args": list(args),
            "kwargs": dict(kwargs or {}),
            "catch_up": catch_up,
        },
        where=f"periodic({task.module_path})",
    )
    with _declared_lock:
        _declared.setdefault(task.backend, {})[schedule.name] = schedule
    return task


def load_schedules(backend: SQLiteBackend) -> dict[str, Schedule]:
    """Every schedule of ``backend``: from OPTIONS["periodic"], then from its apps' ``tasks``
    modules (imported here); raise ``ConfigurationError`` naming the first bad one."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("tasks")
    schedules: dict[str, Schedule] = {}
    where = f"TASKS[{backend.alias!r}]['OPTIONS']['periodic']"
    for name, spec in backend.config.periodic.items():
        if not isinstance(spec, Mapping) or not isinstance(spec.get("task"), str):
            raise ConfigurationError(
                f"{where}[{name!r}] must be a dict with 'task' (a task's dotted path) and "
                f"'cron' or 'every' (got {spec!r})."
            )
        schedules[name] = _schedule(name, spec["task"], spec, where=f"{where}[{name!r}]")
    with _declared_lock:
        declared = dict(_declared.get(backend.alias, {}))
    for name, schedule in declared.items():
        if name in schedules:
            raise ConfigurationError(
                f"Two periodic schedules are named {name!r} (settings and periodic()): "
                "give one of them another name."
            )
        schedules[name] = schedule
    for schedule in schedules.values():
        _check_task(backend, schedule)
    return schedules


def _schedule(name: str, task_path: str, spec: Mapping[str, Any], *, where: str) -> Schedule:
    unknown = set(spec) - {"task", "cron", "every", "timezone", "args", "kwargs", "catch_up"}
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid: task, cron, every, "
            "timezone, args, kwargs, catch_up."
        )
    cron, every = spec.get("cron"), spec.get("every")
    if (cron is None) == (every is None):
        raise ConfigurationError(
            f"{where}: give either cron or every (got cron={cron!r}, every={every!r})."
        )
    tz = _zone(spec.get("timezone"), where)
    every_s = None
    if every is not None:
        every_s = every.total_seconds() if isinstance(every, timedelta) else every
        if (
            isinstance(every_s, bool)
            or not isinstance(every_s, (int, float))
            or not (math.isfinite(every_s) and 1 <= every_s <= MAX_EVERY_S)
        ):
            raise ConfigurationError(
                f"{where}: every must be a timedelta or seconds, at least 1 and at most "
                f"1000 years (got {every!r})."
            )
        every_s = float(every_s)
    if cron is not None:
        if not isinstance(cron, str):
            raise ConfigurationError(f"{where}: cron must be a string (got {cron!r}).")
        try:
            CronSim(cron, datetime.now(tz))
        except CronSimError as exc:
            raise ConfigurationError(
                f"{where}: bad cron expression {cron!r} ({exc}). Use five fields: minute hour "
                "day-of-month month day-of-week, e.g. '0 6 * * *'."
            ) from None
    catch_up = spec.get("catch_up", "latest")
    if catch_up not in CATCH_UP:
        raise ConfigurationError(
            f"{where}: catch_up must be 'latest' (run missed slots once) or 'none' (skip them); "
            f"got {catch_up!r}."
        )
    args, kwargs = spec.get("args", []), spec.get("kwargs", {})
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
        raise ConfigurationError(f"{where}: args must be a list and kwargs a dict.")
    return Schedule(
        name=name,
        task_path=task_path,
        cron=cron,
        every_s=every_s,
        tz=tz,
        args=tuple(args),
        kwargs=dict(kwargs),
        catch_up=catch_up,
    )


def _zone(name: Any, where: str) -> ZoneInfo | timezone:
    if name is None:
        from django.conf import settings

        name = settings.TIME_ZONE or "UTC"
    if name == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"{where}: unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin'."
        ) from None


def _check_task(backend: SQLiteBackend, schedule: Schedule) -> None:
    from ..exceptions import TaskNotAllowed
    from .compat import Task

    task_path = schedule.task_path
    try:
        task = backend._import_task(task_path)
    except TaskNotAllowed as exc:
        raise ConfigurationError(f"Periodic schedule {schedule.name!r}: {exc}") from None
    if not isinstance(task, Task):  # pragma: no cover - _import_task checks
        raise ConfigurationError(f"Periodic schedule {schedule.name!r}: not a task.")
    try:
        backend._new_job(task, list(schedule.args), dict(schedule.kwargs))
    except Exception as exc:
        raise ConfigurationError(
            f"Periodic schedule {schedule.name!r}: its arguments cannot be enqueued ({exc})."
        ) from None


class Scheduler:
    """Enqueue the due slots of ``schedules``; ``tick()`` says when to call it again."""

    def __init__(
        self, backend: SQLiteBackend, schedules: Mapping[str, Schedule], *, clock: Any = None
    ) -> None:
        self.backend = backend
        self.schedules = dict(schedules)
        self._now = clock or wall_clock_us
        # A new schedule's first slot is the first one at or after the pool's start.
        self._started = self._now() - 1
        self._skipped: dict[str, int] = {}  # catch_up="none": the last slot skipped
        self._tasks: dict[str, Task] = {}

    def tick(self) -> float:
        """Enqueue every slot that is due; return seconds until the next one (at most 60)."""
        if not self.schedules:
            return 60.0
        now = self._now()
        try:
            recorded = self.backend.store.schedules()
        except StoreError:
            logger.exception("Reading periodic schedules failed; will retry")
            return 5.0
        wait_us = 60_000_000
        for name, schedule in self.schedules.items():
            last = recorded.get(name, (None, None))[0]
            after = self._started if last is None else last
            after = max(after, self._skipped.get(name, after))
            slot = schedule.latest_slot(now)
            if slot is not None and slot > after:
                self._fire(schedule, slot, now)
            following = schedule.next_slot(max(now, after))
            if following is not None:
                wait_us = min(wait_us, max(0, following - now))
        return max(0.0, wait_us / 1_000_000)

    def next_runs(self) -> dict[str, int | None]:
        """The next slot of each schedule (µs since the epoch), for ``litetasks status``."""
        now = self._now()
        return {name: s.next_slot(now) for name, s in self.schedules.items()}

    def _fire(self, schedule: Schedule, slot: int, now: int) -> None:
        if schedule.catch_up == "none" and now - slot > ON_TIME_S * 1_000_000:
            logger.info(
                "Periodic %s: skipping the missed slot %s (catch_up='none')",
                schedule.name,
                datetime_at(slot, schedule.tz).isoformat(),
            )
            self._skipped[schedule.name] = slot
            return
        task = self._task(schedule)
        try:
            job, args, kwargs = self.backend._new_job(
                task, list(schedule.args), dict(schedule.kwargs)
            )
            if self.backend.store.enqueue_slot(schedule.name, slot, job):
                self.backend._enqueued(task, job, args, kwargs, now)
                logger.info(
                    "Periodic %s: enqueued %s for %s",
                    schedule.name,
                    job.job_id,
                    datetime_at(slot, schedule.tz).isoformat(),
                )
        except Exception:
            logger.exception("Periodic %s: enqueueing its slot failed; will retry", schedule.name)

    def _task(self, schedule: Schedule) -> Task:
        task = self._tasks.get(schedule.name)
        if task is None:
            task = self._tasks[schedule.name] = self.backend._import_task(schedule.task_path)
        return task


def start_scheduler_thread(
    backend: SQLiteBackend, is_stopping: Callable[[], bool]
) -> threading.Thread | None:
    """Enqueue ``backend``'s periodic tasks from a daemon thread of this process (``runserver``
    autorun) until ``is_stopping()``; a bad schedule is logged, not raised, so the server runs."""
    try:
        schedules = load_schedules(backend)
    except ConfigurationError as exc:
        logger.error("litetasks: periodic tasks are off: %s", exc)
        return None
    if not schedules:
        return None
    scheduler = Scheduler(backend, schedules)

    def loop() -> None:
        wait = 0.0
        while not is_stopping():
            if wait <= 0:
                wait = scheduler.tick() + 0.002
            step = min(wait, 0.5)  # notice a stop within half a second
            time.sleep(step)
            wait -= step

    thread = threading.Thread(target=loop, name=f"litetasks-periodic-{backend.alias}", daemon=True)
    thread.start()
    return thread


def datetime_at(us: int, tz: tzinfo) -> datetime:
    """The moment ``us`` (µs since the epoch) in ``tz``; total, as ``backend.from_us`` is."""
    return (_EPOCH + timedelta(microseconds=clamp_us(us))).astimezone(tz)


def _slot(moment: datetime) -> int | None:
    """``moment`` in µs since the epoch, or None past the last time a queue file holds."""
    us = (moment - _EPOCH) // timedelta(microseconds=1)
    return None if us > LATEST_US else us
