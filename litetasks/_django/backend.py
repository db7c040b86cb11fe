"""``SQLiteBackend``: Django's task API on top of the queue file.

``TASKS = {"default": {"BACKEND": "litetasks.backend.SQLiteBackend"}}`` selects it. It turns
``Task``/``TaskResult`` values into store rows and back; the worker (``execution.py``) runs them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.signals import setting_changed
from django.utils import timezone as django_timezone

from .._store.config import BackendConfig, from_options
from .._store.connection import filesystem_type
from .._store.doorbell import doorbell_folder_problem, doorbell_path
from .._store.producer import enqueue as produce
from .._store.producer import enqueue_unique as produce_unique
from .._store.producer import thread_store
from .._store.clock import EARLIEST_US, LATEST_US, clamp_us
from .._store.records import Hook, JobRecord, JobState, NewJob
from .._store.store import CancelResult, Store, new_job_id, new_job_ids
from ..exceptions import (
    ConfigurationError,
    JobNotFound,
    StoreError,
    TaskNotAllowed,
    TaskNotFound,
)
from .compat import (
    BaseTaskBackend,
    InvalidTask,
    InvalidTaskBackend,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from .modules import refusal
from .task import LiteTask, check_options

__all__ = [
    "MAX_JSON_DEPTH",
    "ROW_MARGIN_BYTES",
    "Call",
    "SQLiteBackend",
    "new_job_id",
    "new_job_ids",
    "thread_store",
]

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# A timedelta times an int is exact, and a third of the cost of timedelta(microseconds=...).
MICROSECOND = timedelta(microseconds=1)
# How deep lists and dicts may nest in one argument or return value. Django's normalize_json
# recurses once or twice per level, so a value near Python's recursion limit (1000 frames)
# could be stored by a shallow caller and then fail to load in a worker, every time it is
# retried. 100 is also the default of Ruby's JSON parser (serde_json's is 128).
MAX_JSON_DEPTH = 100
# Room a row keeps beside its arguments for what running the task adds to it (worker ids,
# times, errors, which are cut to fit) and for a return value checked against the rest.
ROW_MARGIN_BYTES = 64 * 1024

_MISSING = object()


def default_queue_path(alias: str) -> Path:
    """Pick the queue file: beside a SQLite default database, else in BASE_DIR, else here."""
    name = "tasks.sqlite3" if alias == "default" else f"tasks-{alias}.sqlite3"
    database = settings.DATABASES.get("default", {})
    db_name = str(database.get("NAME") or "")
    is_file = db_name and db_name != ":memory:" and not db_name.startswith("file:")
    if database.get("ENGINE", "").endswith("sqlite3") and is_file:
        return Path(db_name).expanduser().resolve().parent / name
    base_dir = getattr(settings, "BASE_DIR", None)
    if base_dir:
        return Path(base_dir) / name
    return Path.cwd() / name


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
    return (value - EPOCH) // MICROSECOND


def from_us(value: int | None) -> datetime | None:
    """Convert microseconds since the epoch to what ``timezone.now()`` would give.

    Total: a value outside the times litetasks stores (only a row written by other code holds
    one) becomes the nearest time it stores, never an ``OverflowError``.
    """
    if value is None:
        return None
    if not EARLIEST_US <= value <= LATEST_US:
        value = clamp_us(value)
    moment = EPOCH + MICROSECOND * value
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


def _check_json_value(value: Any, where: str, depth: int = 0) -> None:
    """Refuse dict keys that JSON would silently turn into strings (``{1: "a"}``), and lists
    and dicts nested more than ``MAX_JSON_DEPTH`` levels deep.

    ``depth`` is how many lists and dicts enclose ``value``: -1 for an args list or kwargs
    dict, whose items are each checked as a value of their own.
    """
    if isinstance(value, (dict, list)) and depth >= MAX_JSON_DEPTH:
        raise ValueError(_too_deep(where))
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"Unsupported dict key {key!r} ({type(key).__name__}) in {where}: JSON object "
                    "keys are strings, so it would come back as a different value. Use str keys."
                )
            _check_json_value(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item, where, depth + 1)


def _too_deep(where: str) -> str:
    return (
        f"Lists and dicts in {where} are nested more than {MAX_JSON_DEPTH} levels deep, the "
        "most litetasks stores so that every worker can load them. Pass flatter data."
    )


def normalized_json(value: Any, where: str, depth: int = 0) -> Any:
    """Return ``normalize_json(value)``, refused as ``_check_json_value`` refuses.

    Raises ``TypeError`` or ``ValueError`` (also for nesting too deep for ``normalize_json``).
    """
    try:
        value = normalize_json(value)
    except RecursionError:
        raise ValueError(_too_deep(where)) from None
    if value:
        _check_json_value(value, where, depth)
    return value


def load_json(text: str, where: str, depth: int = 0) -> Any:
    """Decode stored JSON text, refused as ``_check_json_value`` refuses (``ValueError``)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(_too_deep(where)) from None
    if value:
        _check_json_value(value, where, depth)
    return value


class SQLiteBackend(BaseTaskBackend):
    """Store tasks in a WAL-mode SQLite file; ``litetasks run`` executes them."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    task_class = LiteTask

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        # Runs at import time through @task: parse settings, open nothing.
        super().__init__(alias, params)
        try:
            self.config: BackendConfig = from_options(
                alias, self.options, default_path=default_queue_path(alias)
            )
        except ConfigurationError as exc:
            raise InvalidTaskBackend(str(exc)) from exc
        self._allowed_roots: tuple[str, ...] | None = None
        self._tasks: dict[str, Task] = {}
        self._allowed_paths: set[str] = set()
        self._checked_tasks: dict[Task, tuple[Hook, ...]] = {}
        self._max_row_bytes: int | None = None

    @property
    def store(self) -> Store:
        """This thread's connection to the queue file."""
        return thread_store(self.config.store)

    # -- the django.tasks API ----------------------------------------------------------------

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Validate ``task`` and its arguments, store it READY, and return its result.

        A unique task (``@task(unique=...)``) with a twin READY or RUNNING gets that twin's
        result back, and nothing is stored or signalled.
        """
        job, args, kwargs = self._new_job(task, args, kwargs)
        # Into the file at the path, even if it was just moved (see litetasks/producer.py); the
        # store rings the doorbell after the commit.
        if job.unique_key is None:
            enqueued_at_us = produce(self.config.store, [job])
        else:
            enqueued_at_us, [twin] = produce_unique(self.config.store, [job])
            if twin is not None:
                return self.result_from_job(task, twin)
        return self._enqueued(task, job, args, kwargs, enqueued_at_us)

    def enqueue_many(
        self, task: Task, calls: Iterable[Sequence[Any] | Mapping[str, Any] | Call]
    ) -> list[TaskResult]:
        """Enqueue ``task`` once per call, all in one transaction; see ``litetasks.enqueue_many``.

        Every call is validated before anything is written: one bad call refuses them all.
        """
        calls = list(calls)
        ids = new_job_ids(len(calls))
        prepared = [
            self._new_job(task, *_call_arguments(call), job_id=job_id)
            for call, job_id in zip(calls, ids, strict=True)
        ]
        if not prepared:
            return []
        jobs = [job for job, _, _ in prepared]
        if any(job.unique_key is not None for job in jobs):
            enqueued_at_us, twins = produce_unique(self.config.store, jobs)
        else:
            enqueued_at_us, twins = produce(self.config.store, jobs), [None] * len(jobs)
        return [
            self.result_from_job(task, twin)
            if twin is not None
            else self._enqueued(task, job, args, kwargs, enqueued_at_us)
            for (job, args, kwargs), twin in zip(prepared, twins, strict=True)
        ]

    def _checked(self, task: Task) -> tuple[Hook, ...]:
        """Validate ``task`` (once per distinct task: Django's checks inspect the function's
        signature, which costs more than the rest of an enqueue); return its hooks."""
        try:
            return self._checked_tasks[task]
        except KeyError:
            cacheable = True
        except TypeError:  # a task_class field that is not hashable: no cache
            cacheable = False
        self.validate_task(task)
        self.check_task_module(task.module_path)
        hooks = self._hooks(task)
        if cacheable and self._allowed_roots is not None:  # module checks are final by then
            self._checked_tasks[task] = hooks
        return hooks

    def _new_job(
        self, task: Task, args: Any, kwargs: Any, *, job_id: str | None = None
    ) -> tuple[NewJob, Any, Any]:
        """Validate a call of ``task``; return its row (with a new id unless ``job_id`` is
        given) and its normalised arguments."""
        hooks = self._checked(task)
        if args == () and type(args) is tuple:  # Django passes *args: often none at all
            args, args_json = [], "[]"
        else:
            args = normalized_json(args, "the task's args", depth=-1)
            args_json = json.dumps(args)
        if kwargs == {} and type(kwargs) is dict:
            kwargs, kwargs_json = {}, "{}"
        else:
            kwargs = normalized_json(kwargs, "the task's kwargs", depth=-1)
            kwargs_json = json.dumps(kwargs)
        self._check_room(len(args_json) + len(kwargs_json))
        job = NewJob(
            job_id=new_job_id() if job_id is None else job_id,
            task_path=task.module_path,
            queue_name=task.queue_name,
            priority=task.priority,
            args_json=args_json,
            kwargs_json=kwargs_json,
            run_after_us=None
            if task.run_after is None
            else stored_us(task.run_after, f"run_after of {task.module_path!r}"),
            max_attempts=getattr(task, "max_attempts", 1),
            unique_key=self._unique_key(task, args, kwargs),
            hooks=hooks,
        )
        return job, args, kwargs

    def _enqueued(
        self, task: Task, job: NewJob, args: Any, kwargs: Any, enqueued_at_us: int
    ) -> TaskResult:
        result = task_result(
            task=task,
            id=job.job_id,
            status=TaskResultStatus.READY,
            enqueued_at=from_us(enqueued_at_us),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def _unique_key(self, task: Task, args: Any, kwargs: Any) -> str | None:
        unique = getattr(task, "unique", False)
        if unique is False:
            return None
        if unique is True:
            canonical = json.dumps([args, kwargs], sort_keys=True, separators=(",", ":"))
            digest = hashlib.sha256(canonical.encode()).hexdigest()
            return f"{task.module_path}:{digest}"
        key = unique(*args, **kwargs)
        if not isinstance(key, str):
            raise InvalidTask(
                f"The unique key function of {task.module_path!r} returned {key!r} "
                f"({type(key).__name__}); it must return a str."
            )
        return f"{task.module_path}:{key}"

    def _hooks(self, task: Task) -> tuple[Hook, ...]:
        hooks = []
        for when in ("success", "failure", "finish"):
            hook = getattr(task, f"on_{when}", None)
            if hook is not None:
                hooks.append(
                    Hook(
                        when=when,
                        task_path=hook.module_path,
                        queue_name=hook.queue_name,
                        priority=hook.priority,
                        max_attempts=getattr(hook, "max_attempts", 1),
                    )
                )
        return tuple(hooks)

    def validate_task(self, task: Task) -> None:
        """Django's checks, then litetasks' options (``LiteTask``) with errors that say how."""
        super().validate_task(task)
        if task.run_after is not None:  # refused here, at Task.using(), not in a worker
            stored_us(task.run_after, f"run_after of {task.module_path!r}")
        if isinstance(task, LiteTask):
            check_options(task)

    # -- beyond DEP 0014: operator actions ----------------------------------------------------

    def cancel(self, result_ids: Iterable[str]) -> dict[str, CancelResult]:
        """Cancel tasks: a READY one never runs; a RUNNING one is interrupted by its worker.

        Both end FAILED with a ``litetasks.exceptions.TaskCancelled`` error. Returns what
        happened to each id.
        """
        return self.store.cancel(list(result_ids))

    def retry(self, result_ids: Iterable[str]) -> dict[str, str]:
        """Run FAILED tasks again, each with a fresh attempt budget; see ``Store.retry``."""
        return self.store.retry(list(result_ids))

    def prune(
        self,
        *,
        older_than: timedelta,
        statuses: Iterable[str] = ("SUCCESSFUL", "FAILED"),
    ) -> int:
        """Delete results that finished more than ``older_than`` ago; return how many.

        READY and RUNNING tasks are never deleted.
        """
        cutoff = self.store.now_us() - older_than // timedelta(microseconds=1)
        return self.store.prune(
            finished_before_us=cutoff, states=[JobState(str(s).upper()) for s in statuses]
        )

    def get_result(self, result_id: str) -> TaskResult:
        """Return the stored result ``result_id``; raise ``TaskResultDoesNotExist`` if none."""
        if not isinstance(result_id, str):
            raise TaskResultDoesNotExist(result_id)
        try:
            job = self.store.get(result_id)
        except JobNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        try:
            task = self.task_for_job(job)
        except TaskNotAllowed as exc:
            raise InvalidTask(f"Result {result_id!r} cannot be loaded: {exc}") from exc
        try:
            return self.result_from_job(task, job)
        except ValueError as exc:  # a row written by something other than enqueue()
            raise InvalidTask(
                f"Result {result_id!r} cannot be loaded: a stored JSON value is malformed ({exc})."
            ) from exc

    def max_row_bytes(self) -> int:
        """The most bytes a row of the queue file may take (read from SQLite once)."""
        if self._max_row_bytes is None:
            self._max_row_bytes = self.store.max_row_bytes()
        return self._max_row_bytes

    def _check_room(self, arguments_bytes: int) -> None:
        """Refuse arguments that would leave their row no room for the task's outcome."""
        max_row_bytes = self.max_row_bytes()
        if arguments_bytes + ROW_MARGIN_BYTES > max_row_bytes:
            path = str(self.config.store.path)
            raise StoreError(
                f"The task's arguments are too big for the queue file {path!r}: "
                f"{arguments_bytes:,} bytes of JSON, and a row holds {max_row_bytes:,} bytes "
                f"with {ROW_MARGIN_BYTES:,} kept for the outcome; nothing was written. Keep "
                "large data elsewhere (a file, the app database) and pass its id or path instead.",
                path=path,
            )

    def check(self, **kwargs: Any) -> Iterator[checks.CheckMessage]:
        """Report a queue file that cannot work: unwritable folder, network filesystem."""
        yield from super().check(**kwargs)
        path = self.config.store.path
        folder = path.parent
        where = f"TASKS[{self.alias!r}]"
        if not folder.is_dir():
            yield checks.Error(
                f"The folder of the queue file {str(path)!r} does not exist.",
                hint=f"Create {str(folder)!r}, or set {where}['OPTIONS']['path'].",
                id="litetasks.E001",
            )
            return
        if path.is_dir():
            yield checks.Error(
                f"The queue file path {str(path)!r} is a directory.",
                hint=f"Set {where}['OPTIONS']['path'] to a file path inside it, such as "
                f"{str(path / 'tasks.sqlite3')!r}.",
                id="litetasks.E004",
            )
            return
        if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            yield checks.Error(
                f"The queue file {str(path)!r} or its folder is not writable by this user.",
                hint="SQLite writes the -wal and -shm files beside it: make the folder writable, "
                f"or set {where}['OPTIONS']['path'] to a writable place.",
                id="litetasks.E002",
            )
        fstype = filesystem_type(folder)
        if fstype is not None:
            yield checks.Error(
                f"The queue file {str(path)!r} is on a network filesystem ({fstype}).",
                hint="SQLite locking is unreliable there and the queue can corrupt. Put the queue "
                f"file on a local disk ({where}['OPTIONS']['path']).",
                id="litetasks.E003",
            )
        yield from _check_private(path, where)

    # -- rows <-> Django values ---------------------------------------------------------------

    def check_task_module(self, task_path: str) -> None:
        """Refuse a task whose module a worker would not be allowed to import (see
        ``litetasks._django.modules``: the same rules as ``_import_task``)."""
        if task_path in self._allowed_paths:
            return
        module = task_path.rpartition(".")[0]
        if module == "__main__" or module.startswith("__main__."):
            raise InvalidTask(
                f"Task {task_path!r} is defined in __main__, which a worker cannot import. "
                "Move it into a module of an installed app."
            )
        refused = refusal(task_path, self._not_installed(task_path))
        if refused is not None:
            raise InvalidTask(f"Task {refused} Move it into a module of an installed app.")
        if not self._is_allowed_module(module):
            raise InvalidTask(
                f"Task {task_path!r} is not in an installed app, so a worker will not import it. "
                f"Add its app to INSTALLED_APPS, or {module!r} to "
                f"TASKS[{self.alias!r}]['OPTIONS']['task_modules']."
            )
        if self._allowed_roots is not None:  # the answer is final once the apps are ready
            self._allowed_paths.add(task_path)

    def task_for_job(self, job: JobRecord) -> Task:
        """Return the ``Task`` a row names, configured as it was enqueued.

        Raises ``TaskNotAllowed`` without importing anything when the row names a module outside
        the installed apps and ``task_modules``, and after importing it when the name is not a
        ``Task`` of this backend.
        """
        task = self._tasks.get(job.task_path)
        if task is None:
            task = self._tasks[job.task_path] = self._import_task(job.task_path)
        run_after = from_us(job.run_after_us)
        if (task.priority, task.queue_name, task.run_after) != (
            job.priority,
            job.queue_name,
            run_after,
        ):
            task = task.using(priority=job.priority, queue_name=job.queue_name, run_after=run_after)
        return task

    def result_from_job(self, task: Task, job: JobRecord) -> TaskResult:
        """Build the ``TaskResult`` a row describes."""
        result = task_result(
            task=task,
            id=job.job_id,
            status=TaskResultStatus(job.state.value),
            enqueued_at=from_us(job.enqueued_at_us),
            started_at=from_us(job.started_at_us),
            last_attempted_at=from_us(job.last_attempted_at_us),
            finished_at=from_us(job.finished_at_us),
            args=load_json(job.args_json, "the stored args", depth=-1),
            kwargs=load_json(job.kwargs_json, "the stored kwargs", depth=-1),
            backend=self.alias,
            errors=[
                TaskError(exception_class_path=e.exception_class_path, traceback=e.traceback)
                for e in job.errors
            ],
            worker_ids=list(job.worker_ids),
        )
        if job.return_json is not None:
            set_return_value(result, load_json(job.return_json, "the stored return value"))
        return result

    def _import_task(self, task_path: str) -> Task:
        """Import the ``Task`` ``task_path`` names, if ``litetasks._django.modules`` allows it.

        Raises ``TaskNotAllowed`` for a path no worker imports (before importing anything), and
        ``TaskNotFound`` when this worker does not have the task (another worker may): its module
        outside this worker's apps (not imported), not importable here, without that name, or
        not a task of this backend.
        """
        refused = refusal(task_path, self._not_installed(task_path))
        if refused is not None:
            raise TaskNotAllowed(refused)
        module_name, _, name = task_path.rpartition(".")
        if not self._is_allowed_module(module_name):
            raise TaskNotFound(
                self._not_installed(task_path), task_path=task_path, reason="outside"
            )
        try:
            module = __import__(module_name, fromlist=["_"])
        except Exception as exc:
            raise TaskNotFound(
                f"Cannot import {module_name!r} for task {task_path!r}: {exc!r}.",
                task_path=task_path,
                reason="import",
            ) from exc
        candidate = getattr(module, name, _MISSING)
        if candidate is _MISSING:
            raise TaskNotFound(
                f"{task_path!r} is not a task: module {module_name!r} has no {name!r}.",
                task_path=task_path,
                reason="missing",
            )
        if not isinstance(candidate, Task):
            raise TaskNotFound(
                f"{task_path!r} is not a task: only functions decorated with @task can run.",
                task_path=task_path,
                reason="not_task",
            )
        if candidate.backend != self.alias:
            raise TaskNotFound(
                f"{task_path!r} belongs to backend {candidate.backend!r}, not {self.alias!r}.",
                task_path=task_path,
                reason="backend",
            )
        return candidate

    def _not_installed(self, task_path: str) -> str:
        return (
            f"{task_path!r} is not in an installed app or in "
            f"TASKS[{self.alias!r}]['OPTIONS']['task_modules']; it was not imported."
        )

    def _is_allowed_module(self, module: str) -> bool:
        if self._allowed_roots is None:
            roots = _installed_roots()
            if roots is None:  # the app registry is not ready yet: guess, and do not cache
                allowed = tuple(_settings_roots()) + self.config.task_modules
            else:
                allowed = self._allowed_roots = roots + self.config.task_modules
        else:
            allowed = self._allowed_roots
        return any(module == root or module.startswith(root + ".") for root in allowed)


class Call:
    """The arguments of one call in ``enqueue_many``: ``Call(1, 2, lang="de")``."""

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Call({', '.join(parts)})"


def _call_arguments(call: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A call of ``enqueue_many``: a ``Call``, a tuple or list of positional arguments, or a
    dict of keyword arguments."""
    if isinstance(call, Call):
        return call.args, call.kwargs
    if isinstance(call, (tuple, list)):
        return tuple(call), {}
    if isinstance(call, Mapping):
        return (), dict(call)
    raise TypeError(
        f"Each call passed to enqueue_many must be a tuple of positional arguments, a dict of "
        f"keyword arguments, or litetasks.Call(*args, **kwargs); got {call!r}."
    )


def set_return_value(result: TaskResult, value: Any) -> None:
    """Set a result's return value.

    ``_return_value`` is a frozen, init=False field of Django's ``TaskResult``: there is no
    public way to set it, and Django's own backends write it this same way.
    """
    object.__setattr__(result, "_return_value", value)


# The fields litetasks sets when it builds a TaskResult, and whether they are all there are
# (besides the return value): then building one can skip TaskResult.__post_init__.
_RESULT_FIELDS = frozenset(
    {
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
    }
)
_ALL_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(TaskResult))
_CAN_SKIP_POST_INIT = set(_ALL_RESULT_FIELDS) == {*_RESULT_FIELDS, "_return_value"}


def task_result(**fields: Any) -> TaskResult:
    """Build a ``TaskResult`` whose ``args`` and ``kwargs`` are already JSON-normal.

    ``TaskResult.__post_init__`` normalises them again, which is a third of what building one
    costs, on every enqueue and every run. If Django's ``TaskResult`` ever has fields this
    does not know, the constructor builds it.
    """
    if not _CAN_SKIP_POST_INIT or fields.keys() != _RESULT_FIELDS:
        return TaskResult(**fields)
    result = object.__new__(TaskResult)
    for name, value in fields.items():
        object.__setattr__(result, name, value)
    object.__setattr__(result, "_return_value", None)
    return result


def copy_result(result: TaskResult) -> TaskResult:
    """A copy of ``result``, to set the finishing fields on.

    Not ``dataclasses.replace()``: that would run ``TaskResult.__post_init__``, normalising the
    (already normal) arguments again; and ``copy.copy()`` of a slotted dataclass goes through
    pickling's ``__reduce_ex__``, several times slower than setting the fields.
    """
    copy = object.__new__(TaskResult)
    for name in _ALL_RESULT_FIELDS:
        object.__setattr__(copy, name, getattr(result, name))
    return copy


def _installed_roots() -> tuple[str, ...] | None:
    if not apps.ready:
        return None
    return tuple(app.name for app in apps.get_app_configs())


def _settings_roots() -> Iterator[str]:
    for entry in settings.INSTALLED_APPS:
        yield entry.partition(".apps.")[0] if ".apps." in entry else entry


def _check_private(path: Path, where: str) -> Iterator[checks.CheckMessage]:
    """Warn about folders where another user could plant files beside the queue file."""
    folder = Path(os.path.realpath(path)).parent
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & stat.S_IWOTH:
        yield checks.Warning(
            f"The folder of the queue file {str(path)!r} is writable by every user "
            f"(mode {mode:04o}).",
            hint="Another user could put their own -wal, -shm or a symlink there before "
            "litetasks creates them, and so read or redirect the queue. Remove write permission "
            f"for others (chmod o-w {str(folder)!r}), or set {where}['OPTIONS']['path'] to a "
            "private folder.",
            id="litetasks.W001",
        )
    bell_folder = doorbell_path(path).parent
    problem = doorbell_folder_problem(bell_folder)
    if problem is not None:
        yield checks.Warning(
            problem,
            hint=f"Delete {str(bell_folder)!r}: litetasks creates it again, private. Until then "
            "idle workers find new tasks only at their poll interval.",
            id="litetasks.W002",
        )
