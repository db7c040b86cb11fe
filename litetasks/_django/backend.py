"""``SQLiteBackend``: Django's task API on top of the queue file.

``TASKS = {"default": {"BACKEND": "litetasks.backend.SQLiteBackend"}}`` selects it. It turns
``Task`` calls into store rows (``new_job``) and rows back into ``TaskResult``s
(``litetasks._django.results``); the worker (``litetasks._runtime.execution``) runs them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks

from .._store.clock import MICROSECOND
from .._store.config import BackendConfig, from_options
from .._store.doorbell import share as share_doorbell
from .._store.enqueueing import new_job_id, new_job_ids
from .._store.producer import enqueue as produce
from .._store.producer import enqueue_unique as produce_unique
from .._store.producer import thread_store
from .._store.records import Hook, JobRecord, JobState, NewJob
from .._store.rowlimits import ROW_MARGIN_BYTES
from .._store.store import CancelResult, Store
from ..exceptions import ConfigurationError, JobNotFound, StoreError, TaskNotAllowed
from . import results
from .checks import queue_file_checks
from .compat import (
    BaseTaskBackend,
    InvalidTask,
    InvalidTaskBackend,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    task_enqueued,
)
from .console.checks import redact_checks
from .forwarding import ForwardReport, forward, forwarded_result
from .modules import TaskModules
from .setup_checks import setup_checks, warn_if_app_missing
from .task import LiteTask, check_options, hooks_of, unique_key
from .testqueue import in_test_environment, queue_path_for_tests
from .values import dump_json, normalized_arguments

__all__ = ["Call", "SQLiteBackend", "call_arguments", "default_queue_path"]


def _base_dir() -> Path | None:
    base_dir = getattr(settings, "BASE_DIR", None)
    return Path(base_dir) if base_dir else None


def _for_tests(config: BackendConfig, by_pid: dict[int, BackendConfig]) -> BackendConfig:
    """``config`` with this test process's queue file (cached in ``by_pid``)."""
    pid = os.getpid()
    test_config = by_pid.get(pid)
    if test_config is None:
        path = config.test_path or queue_path_for_tests(config.store.path)
        store = dataclasses.replace(config.store, path=path)
        test_config = by_pid[pid] = dataclasses.replace(config, store=store)
    return test_config


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


class SQLiteBackend(BaseTaskBackend):
    """Store tasks in a WAL-mode SQLite file; ``litetasks run`` executes them."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    task_class = LiteTask

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        # Runs at import time through @task: parse settings, open nothing. Bad OPTIONS do not
        # raise here (that would be a traceback from whatever imported a tasks module, even in
        # `manage.py check`): the system checks report them (litetasks.E005), and `config`
        # raises InvalidTaskBackend with the same message at the first use.
        super().__init__(alias, params)
        self.config_error: str | None = None
        self._config: BackendConfig | None = None
        try:
            self._config = from_options(
                alias, self.options, default_path=default_queue_path(alias), base_dir=_base_dir()
            )
        except ConfigurationError as exc:
            self.config_error = str(exc)
        else:  # a doorbell folder shared with the group is this project's (file_mode)
            share_doorbell(self._config.store.path, self._config.store.file_mode)
        self._test_configs: dict[int, BackendConfig] = {}
        # Which modules its workers import tasks from, and the import (modules.py).
        self.modules = TaskModules(alias, () if self._config is None else self._config.task_modules)
        self._tasks: dict[str, Task] = {}
        self._checked_tasks: dict[Task, tuple[Hook, ...]] = {}
        self._max_row_bytes: int | None = None
        warn_if_app_missing(alias, self.config_error)

    @property
    def config(self) -> BackendConfig:
        """The parsed OPTIONS; raises ``InvalidTaskBackend`` if they are wrong.

        Under a test runner (between Django's ``setup_test_environment()`` and its teardown)
        the queue file is this test process's own (``OPTIONS["test_path"]``; see testqueue.py).
        """
        config = self._config
        if config is None:
            raise InvalidTaskBackend(self.config_error)
        if config.test_path is not False and in_test_environment():
            return _for_tests(config, self._test_configs)
        return config

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
        job, args, kwargs = self.new_job(task, args, kwargs)
        # Into the file at the path, even if it was just moved (see _store/producer.py); the
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
            self.new_job(task, *call_arguments(call), job_id=job_id)
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

    def enqueue_slot(
        self, task: Task, schedule: str, slot_us: int, args: Any, kwargs: Any
    ) -> TaskResult | None:
        """Enqueue ``task`` as the slot ``slot_us`` of the periodic schedule ``schedule``, once.

        Returns its result as stored, and sends ``task_enqueued``; None when nothing was
        enqueued: the slot (or a later one) was enqueued before, by any process, or it was
        skipped because the task is unique and its twin is live (``Store.enqueue_slot``).
        """
        job, args, kwargs = self.new_job(task, args, kwargs)
        enqueued_at_us = self.store.enqueue_slot(schedule, slot_us, job)
        if enqueued_at_us is None:
            return None
        return self._enqueued(task, job, args, kwargs, enqueued_at_us)

    def new_job(
        self, task: Task, args: Any, kwargs: Any, *, job_id: str | None = None
    ) -> tuple[NewJob, Any, Any]:
        """Validate a call of ``task``; return its row (with a new id unless ``job_id`` is
        given) and its normalised arguments. Raises as ``enqueue`` does; writes nothing."""
        hooks = self._checked(task)
        if args == () and type(args) is tuple and kwargs == {} and type(kwargs) is dict:
            args, args_json, kwargs, kwargs_json = [], "[]", {}, "{}"  # Django passes *args
        else:  # most calls pass no kwargs
            args, kwargs = normalized_arguments(args, kwargs, task.module_path)
            args_json, kwargs_json = dump_json(args), dump_json(kwargs) if kwargs else "{}"
        self._check_room(len(args_json) + len(kwargs_json))
        run_after = task.run_after
        return (
            NewJob(
                job_id=new_job_id() if job_id is None else job_id,
                task_path=task.module_path,
                queue_name=task.queue_name,
                priority=task.priority,
                args_json=args_json,
                kwargs_json=kwargs_json,
                run_after_us=None
                if run_after is None
                else results.stored_us(run_after, f"run_after of {task.module_path!r}"),
                max_attempts=getattr(task, "max_attempts", 1),
                unique_key=unique_key(task, args, kwargs),
                hooks=hooks,
            ),
            args,
            kwargs,
        )

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
        hooks = hooks_of(task)
        if cacheable and self.modules.is_final:  # module checks are final by then
            self._checked_tasks[task] = hooks
        return hooks

    def _enqueued(
        self, task: Task, job: NewJob, args: Any, kwargs: Any, enqueued_at_us: int
    ) -> TaskResult:
        result = results.enqueued_result(task, job, args, kwargs, enqueued_at_us, self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    def validate_task(self, task: Task) -> None:
        """Django's checks, then litetasks' options (``LiteTask``) with errors that say how."""
        super().validate_task(task)
        if task.run_after is not None:  # refused here, at Task.using(), not in a worker
            results.stored_us(task.run_after, f"run_after of {task.module_path!r}")
        if isinstance(task, LiteTask):
            check_options(task)

    def get_result(self, result_id: str) -> TaskResult:
        """Return the stored result ``result_id``; raise ``TaskResultDoesNotExist`` if none."""
        if not isinstance(result_id, str):
            raise TaskResultDoesNotExist(result_id)
        try:
            job = self.store.get(result_id)
        except JobNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        if job.state is JobState.FORWARDED:  # litetasks forward moved it: the target's result
            return forwarded_result(self, job)
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

    def check(self, **kwargs: Any) -> Iterator[checks.CheckMessage]:
        """Report OPTIONS that cannot work, a missing litetasks app, and a queue file that
        cannot work: unwritable folder, network filesystem."""
        yield from super().check(**kwargs)
        yield from setup_checks(self)
        if self._config is not None:
            yield from queue_file_checks(self.config.store.path, self.alias)
            yield from redact_checks(self.config.redact, self.alias)

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
        cutoff = self.store.now_us() - older_than // MICROSECOND
        return self.store.prune(
            finished_before_us=cutoff, states=[JobState(str(s).upper()) for s in statuses]
        )

    def forward(self, to: str, **options: Any) -> ForwardReport:
        """Move the tasks that have not started to backend alias ``to`` (``forwarding.forward``:
        ``queues``, ``tasks``, ``batch``, ``dry_run``, ``progress``)."""
        return forward(self, to, **options)

    # -- rows <-> tasks and results --------------------------------------------------------------

    def check_task_module(self, task_path: str) -> None:
        """Refuse (``InvalidTask``) a task whose module a worker would not be allowed to import
        (``TaskModules.check_enqueue``: the same rules as ``import_task``)."""
        self.modules.check_enqueue(task_path)

    def import_task(self, task_path: str) -> Task:
        """Import the ``Task`` ``task_path`` names, if its workers may (``TaskModules.import_task``:
        raises ``TaskNotAllowed`` or ``TaskNotFound``)."""
        return self.modules.import_task(task_path)

    def task_for_job(self, job: JobRecord) -> Task:
        """Return the ``Task`` a row names, configured as it was enqueued.

        Raises ``TaskNotAllowed`` without importing anything when the row names a module outside
        the installed apps and ``task_modules``, and after importing it when the name is not a
        ``Task``. A task declared for another alias (enqueued here with ``Task.using(backend=)``)
        comes back ``.using(backend=<this alias>)``, as Django's own database backend does.
        """
        task = self._tasks.get(job.task_path)
        if task is None:
            task = self._tasks[job.task_path] = self.import_task(job.task_path)
        run_after = results.from_us(job.run_after_us)
        if (task.backend, task.priority, task.queue_name, task.run_after) != (
            self.alias,
            job.priority,
            job.queue_name,
            run_after,
        ):
            task = task.using(
                backend=self.alias,
                priority=job.priority,
                queue_name=job.queue_name,
                run_after=run_after,
            )
        return task

    def result_from_job(self, task: Task, job: JobRecord) -> TaskResult:
        """Build the ``TaskResult`` a row describes (``results.result_from_job``)."""
        return results.result_from_job(task, job, self.alias)

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


class Call:
    """The arguments of one call in ``enqueue_many``: ``Call(1, 2, lang="de")``."""

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Call({', '.join(parts)})"


def call_arguments(call: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
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
