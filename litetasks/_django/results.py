"""Stored jobs as Django ``TaskResult``s: the one place that builds them, and their times.

A job's public name is its result (``TaskResult``, result id == job id). Every result litetasks
hands out is built here: when a task is enqueued (``enqueued_result``), read back
(``result_from_job``: ``get_result``, a unique task's live twin), and run (``running_result``,
then ``finished_result``). Times are stored as microseconds (``litetasks._store.clock``); here
they become what ``timezone.now()`` gives: aware with ``USE_TZ``, else naive in ``TIME_ZONE``.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils import timezone as django_timezone

from .._store.clock import EARLIEST_US, LATEST_US, us_from_datetime, utc_datetime
from .._store.records import ErrorRecord, JobRecord, NewJob, Outcome
from .compat import (
    TASK_REFRESH_ATTRS,
    InvalidTask,
    Task,
    TaskError,
    TaskResult,
    TaskResultStatus,
)
from .values import load_json

__all__ = [
    "LiteTaskResult",
    "copy_result",
    "enqueued_result",
    "finished_result",
    "from_us",
    "result_from_job",
    "running_result",
    "set_return_value",
    "stored_us",
    "task_errors",
    "task_result",
    "to_us",
]

_USE_TZ: list[bool] = []  # settings.USE_TZ, cached: read several times per task


def _use_tz() -> bool:
    if not _USE_TZ:
        _USE_TZ.append(bool(settings.USE_TZ))
    return _USE_TZ[0]


def _forget_use_tz(*, setting: str, **kwargs: Any) -> None:
    if setting == "USE_TZ":
        _USE_TZ.clear()


setting_changed.connect(_forget_use_tz)


def to_us(value: datetime) -> int:
    """Convert a datetime to integer microseconds since the epoch (naive means TIME_ZONE)."""
    if django_timezone.is_naive(value):
        value = django_timezone.make_aware(value, django_timezone.get_default_timezone())
    return us_from_datetime(value)


def from_us(value: int | None) -> datetime | None:
    """Convert microseconds since the epoch to what ``timezone.now()`` would give.

    Total: a value outside the times litetasks stores (only a row written by other code holds
    one) becomes the nearest time it stores, never an ``OverflowError``.
    """
    if value is None:
        return None
    moment = utc_datetime(value)
    if _use_tz():
        return moment
    naive: datetime = django_timezone.make_naive(moment, django_timezone.get_default_timezone())
    return naive


def stored_us(value: datetime, what: str) -> int:
    """``to_us(value)``, refused with ``InvalidTask`` unless the queue file can hold it."""
    us = to_us(value)
    if not EARLIEST_US <= us <= LATEST_US:
        raise InvalidTask(
            f"{what} is {value.isoformat()!r}, outside the times a queue file holds (0001-01-02 "
            "to 9999-12-30 UTC, so that every worker can read it in any time zone). Pass a "
            "datetime in that range, or none to run the task as soon as possible."
        )
    return us


def task_errors(errors: Iterable[ErrorRecord]) -> list[TaskError]:
    """The ``TaskError``s of stored errors, oldest first."""
    return [
        TaskError(exception_class_path=e.exception_class_path, traceback=e.traceback)
        for e in errors
    ]


def enqueued_result(
    task: Task, job: NewJob, args: Any, kwargs: Any, enqueued_at_us: int, alias: str
) -> TaskResult:
    """The result of ``job``, just stored READY at ``enqueued_at_us`` (``args``, ``kwargs``:
    its arguments, JSON-normal)."""
    enqueued_at = from_us(enqueued_at_us)
    if _SETTERS is not None:  # task_result's work, without a dict of the fields: every enqueue
        result = _new_result()
        for set_slot, value in zip(
            _SETTERS,
            (task, job.job_id, _READY, enqueued_at, None, None, None, args, kwargs, alias, [], []),
            strict=True,
        ):
            set_slot(result, value)
        return result
    return task_result(
        task=task,
        id=job.job_id,
        status=_READY,
        enqueued_at=enqueued_at,
        started_at=None,
        last_attempted_at=None,
        finished_at=None,
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=[],
        worker_ids=[],
    )


def result_from_job(task: Task, job: JobRecord, alias: str) -> TaskResult:
    """The result a stored job describes, return value included.

    Raises ``ValueError`` when a stored JSON value is malformed (a row written by other code).
    """
    result = _result(
        task,
        job,
        alias,
        status=TaskResultStatus(job.state.value),
        args=load_json(job.args_json, "the stored args", depth=-1),
        kwargs=load_json(job.kwargs_json, "the stored kwargs", depth=-1),
        started_at_us=job.started_at_us,
        last_attempted_at_us=job.last_attempted_at_us,
        finished_at_us=job.finished_at_us,
    )
    if job.return_json is not None:
        set_return_value(result, load_json(job.return_json, "the stored return value"))
    return result


def running_result(
    task: Task, job: JobRecord, args: Any, kwargs: Any, started_us: int, alias: str
) -> TaskResult:
    """The result of a claimed job whose attempt started at ``started_us`` (``task_started``).

    ``args`` and ``kwargs`` are its arguments, already loaded. ``started_at`` is when its first
    attempt started: this one's start, not the claim's, for a first attempt.
    """
    return _result(
        task,
        job,
        alias,
        status=TaskResultStatus.RUNNING,
        args=args,
        kwargs=kwargs,
        started_at_us=started_us if job.attempts <= 1 else job.started_at_us,
        last_attempted_at_us=started_us,
        finished_at_us=None,
    )


def finished_result(
    result: TaskResult, outcome: Outcome, *, error: ErrorRecord | None = None, value: Any = None
) -> TaskResult:
    """The result of a running ``result`` once ``outcome`` is recorded (``task_finished``):
    FAILED with ``error`` added, else SUCCESSFUL with ``value`` returned."""
    errors = list(result.errors)
    if error is not None:
        errors += task_errors([error])
    finished = copy_result(result)
    status = TaskResultStatus.FAILED if error else TaskResultStatus.SUCCESSFUL
    object.__setattr__(finished, "status", status)
    object.__setattr__(finished, "finished_at", from_us(outcome.finished_at_us))
    object.__setattr__(finished, "errors", errors)
    if error is None:
        set_return_value(finished, value)
    return finished


def _result(
    task: Task,
    job: JobRecord,
    alias: str,
    *,
    status: TaskResultStatus,
    args: Any,
    kwargs: Any,
    started_at_us: int | None,
    last_attempted_at_us: int | None,
    finished_at_us: int | None,
) -> TaskResult:
    return task_result(
        task=task,
        id=job.job_id,
        status=status,
        enqueued_at=from_us(job.enqueued_at_us),
        started_at=from_us(started_at_us),
        last_attempted_at=from_us(last_attempted_at_us),
        finished_at=from_us(finished_at_us),
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=task_errors(job.errors),
        worker_ids=list(job.worker_ids),
    )


class LiteTaskResult(TaskResult):
    """Django's ``TaskResult`` whose ``refresh()`` also shows a retry's due time.

    Between attempts a task is READY again with a later ``run_after`` in its row; Django's
    ``refresh()`` copies only the status, times, errors and return value, so
    ``result.task.run_after`` would keep the enqueue-time value. Here it is the stored one, as
    ``get_result`` gives.
    """

    __slots__ = ()

    def refresh(self) -> None:
        self._refreshed_from(self.task.get_backend().get_result(self.id))

    async def arefresh(self) -> None:
        self._refreshed_from(await self.task.get_backend().aget_result(self.id))

    def _refreshed_from(self, refreshed: TaskResult) -> None:
        for attr in TASK_REFRESH_ATTRS:
            object.__setattr__(self, attr, getattr(refreshed, attr))
        if refreshed.task.run_after != self.task.run_after:
            object.__setattr__(self, "task", self.task.using(run_after=refreshed.task.run_after))


def set_return_value(result: TaskResult, value: Any) -> None:
    """Set a result's return value.

    ``_return_value`` is a frozen, init=False field of Django's ``TaskResult``: there is no
    public way to set it, and Django's own backends write it this same way.
    """
    object.__setattr__(result, "_return_value", value)


# The fields litetasks sets when it builds a TaskResult, in the order enqueued_result passes
# them, and whether they are all there are (besides the return value): then building one can
# skip TaskResult.__post_init__.
_ORDER = (
    "task",
    "id",
    "status",
    "enqueued_at",
    "started_at",
    "last_attempted_at",
    "finished_at",
    "args",
    "kwargs",
    "backend",
    "errors",
    "worker_ids",
)
_RESULT_FIELDS = frozenset(_ORDER)
_ALL_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(TaskResult))
_CAN_SKIP_POST_INIT = set(_ALL_RESULT_FIELDS) == {*_RESULT_FIELDS, "_return_value"}


def _slot_setters() -> dict[str, Callable[[object, Any], None]] | None:
    """Per field, its slot's setter; None unless every field is a slot of ``TaskResult``.

    Setting a slot directly costs half what ``object.__setattr__`` does (which looks the name
    up on the class for every field of every result).
    """
    setters = {}
    for name in _ALL_RESULT_FIELDS:
        slot = getattr(TaskResult, name, None)
        if not isinstance(slot, types.MemberDescriptorType):
            return None
        setters[name] = slot.__set__
    return setters


_SET_SLOT = _slot_setters()
# The setters of the fields in _ORDER, when task_result would skip __post_init__ too.
_SETTERS = (
    tuple(_SET_SLOT[name] for name in _ORDER)
    if _SET_SLOT is not None and _CAN_SKIP_POST_INIT
    else None
)
_READY = TaskResultStatus.READY


def _new_result() -> TaskResult:
    """A ``LiteTaskResult`` with no return value and its other fields yet to be set."""
    result = object.__new__(LiteTaskResult)
    if _SET_SLOT is not None:
        _SET_SLOT["_return_value"](result, None)
    else:
        object.__setattr__(result, "_return_value", None)
    return result


def task_result(**fields: Any) -> TaskResult:
    """Build a ``TaskResult`` whose ``args`` and ``kwargs`` are already JSON-normal.

    ``TaskResult.__post_init__`` normalises them again, which is a third of what building one
    costs, on every enqueue and every run. If Django's ``TaskResult`` ever has fields this
    does not know, the constructor builds it.
    """
    if not _CAN_SKIP_POST_INIT or fields.keys() != _RESULT_FIELDS:
        return LiteTaskResult(**fields)
    result = _new_result()
    if _SET_SLOT is None:
        for name, value in fields.items():
            object.__setattr__(result, name, value)
        return result
    for name, value in fields.items():
        _SET_SLOT[name](result, value)
    return result


def copy_result(result: TaskResult) -> TaskResult:
    """A copy of ``result``, to set the finishing fields on.

    Not ``dataclasses.replace()``: that would run ``TaskResult.__post_init__``, normalising the
    (already normal) arguments again; and ``copy.copy()`` of a slotted dataclass goes through
    pickling's ``__reduce_ex__``, several times slower than setting the fields.
    """
    copy = object.__new__(LiteTaskResult)
    for name in _ALL_RESULT_FIELDS:
        object.__setattr__(copy, name, getattr(result, name))
    return copy
