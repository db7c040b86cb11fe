"""Periodic tasks: cron expressions (in a time zone) and fixed intervals, enqueued by the pool.

Declare them in code, in an installed app's ``tasks`` module::

    from litetasks import periodic

    periodic(send_digest, cron="0 6 * * *", timezone="Europe/Berlin")
    periodic(poll_feeds, every=timedelta(minutes=5))

or in settings::

    TASKS["default"]["OPTIONS"]["periodic"] = {
        "digest": {"task": "news.tasks.send_digest", "cron": "0 6 * * *"},
    }

This module declares schedules; ``litetasks run`` (the supervisor) and the ``runserver``
autorun pool run them (``litetasks._runtime.scheduler``), enqueueing each slot when it is due.
Each slot is enqueued once, however many supervisors share
the queue file: the store records the last slot per schedule in the transaction that inserts
its task. After downtime, missed slots run once (the latest), or not at all with
``catch_up="none"``; a new schedule starts with the next slot after the pool starts.

Cron expressions are parsed and walked by ``cronsim`` (Debian cron's rules, DST included: a
slot in the hour skipped in spring runs when that hour ends, and a slot in the hour repeated in
autumn runs once).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .._store.clock import LATEST_US, us_from_datetime, utc_datetime
from ..exceptions import ConfigurationError, TaskNotAllowed

if TYPE_CHECKING:
    from .backend import SQLiteBackend
    from .compat import Task

__all__ = ["CATCH_UP", "Schedule", "datetime_at", "declared_in_code", "load_schedules", "periodic"]

CATCH_UP = ("latest", "none")
# The longest ``every``: a thousand years, so that every slot is a time a queue file holds.
MAX_EVERY_S = 1000 * 365.25 * 86400

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
    renaming it starts a new schedule; a second schedule of one task needs its own ``name``
    (a different one under a name already declared is refused). Returns ``task``, so it also
    works as a decorator argument. Raises ``ConfigurationError`` for a bad expression,
    interval or time zone, and for a name already declared with another schedule.
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
    _declare(task, schedule)
    return task


def _declare(task: Task, schedule: Schedule) -> None:
    """Keep ``schedule`` of ``task`` under its name for the task's backend; refuse another
    schedule under a name already declared (the same one again is a module re-imported)."""
    with _declared_lock:
        schedules = _declared.setdefault(task.backend, {})
        earlier = schedules.get(schedule.name)
        if earlier is not None and earlier != schedule:
            raise ConfigurationError(
                f"periodic({task.module_path}): a schedule named {schedule.name!r} is already "
                f"declared ({earlier.description}); this one ({schedule.description}) would "
                "replace it. Give each schedule of a task after the first its own name=, such "
                f"as periodic({task.module_path}, ..., name='{schedule.name}-2')."
            )
        schedules[schedule.name] = schedule


def declared_in_code() -> dict[str, list[str]]:
    """The names of the schedules ``periodic()`` declared, per backend alias."""
    with _declared_lock:
        return {alias: sorted(names) for alias, names in _declared.items()}


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
    every_s = None if every is None else _every_s(every, where)
    if cron is not None:
        _check_cron(cron, tz, where)
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


def _every_s(every: Any, where: str) -> float:
    seconds = every.total_seconds() if isinstance(every, timedelta) else every
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not (math.isfinite(seconds) and 1 <= seconds <= MAX_EVERY_S)
    ):
        raise ConfigurationError(
            f"{where}: every must be a timedelta or seconds, at least 1 and at most "
            f"1000 years (got {every!r})."
        )
    return float(seconds)


def _check_cron(cron: Any, tz: ZoneInfo | timezone, where: str) -> None:
    if not isinstance(cron, str):
        raise ConfigurationError(f"{where}: cron must be a string (got {cron!r}).")
    try:
        CronSim(cron, datetime.now(tz))
    except CronSimError as exc:
        raise ConfigurationError(
            f"{where}: bad cron expression {cron!r} ({exc}). Use five fields: minute hour "
            "day-of-month month day-of-week, e.g. '0 6 * * *'."
        ) from None


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
    from .compat import Task

    try:
        task = backend.import_task(schedule.task_path)
    except TaskNotAllowed as exc:
        raise ConfigurationError(f"Periodic schedule {schedule.name!r}: {exc}") from None
    if not isinstance(task, Task):  # pragma: no cover - import_task checks
        raise ConfigurationError(f"Periodic schedule {schedule.name!r}: not a task.")
    try:
        backend.new_job(task, list(schedule.args), dict(schedule.kwargs))
    except Exception as exc:
        raise ConfigurationError(
            f"Periodic schedule {schedule.name!r}: its arguments cannot be enqueued ({exc})."
        ) from None


def datetime_at(us: int, tz: tzinfo) -> datetime:
    """The moment ``us`` (µs since the epoch) in ``tz``; total, as ``clock.utc_datetime`` is."""
    return utc_datetime(us).astimezone(tz)


def _slot(moment: datetime) -> int | None:
    """``moment`` in µs since the epoch, or None past the last time a queue file holds."""
    us = us_from_datetime(moment)
    return None if us > LATEST_US else us
