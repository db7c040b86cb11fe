"""Exceptions raised by litetasks.

The hierarchy::

    LiteTasksError
      ConfigurationError      bad OPTIONS, CLI arguments or settings
      StoreError              the queue file cannot be opened, read or written
        SchemaVersionError    the file was written by a newer litetasks
      JobNotFound             no job has the given id
      LeaseLost               a worker tried to record an outcome of a job it no longer owns

Errors recorded on a task (in ``TaskResult.errors``) rather than raised:

    WorkerLost                the worker running the task died (kill -9, OOM, power loss)
    JobTooBig                 the stored row is too big for a worker to claim it
    MalformedJob              the stored row holds values litetasks did not write and cannot read
    TaskTimeout               the task ran longer than its ``timeout``
    TaskCancelled             the task was cancelled while it ran
    TaskNotAllowed            a stored row names something that is not a task of this backend
      TaskNotFound            the workers did not find a row's task in the code they loaded
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "JobNotFound",
    "JobTooBig",
    "LeaseLost",
    "LiteTasksError",
    "MalformedJob",
    "SchemaVersionError",
    "StoreError",
    "TaskCancelled",
    "TaskInterrupted",
    "TaskNotAllowed",
    "TaskNotFound",
    "TaskTimeout",
    "WorkerLost",
]


class LiteTasksError(Exception):
    """Base class of every error litetasks raises."""


class ConfigurationError(LiteTasksError):
    """The configuration (OPTIONS, CLI arguments, settings) is invalid."""


class StoreError(LiteTasksError):
    """The queue file cannot be opened, read or written."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class SchemaVersionError(StoreError):
    """The queue file has a schema version this litetasks does not know."""

    def __init__(self, message: str, *, path: str, found: int, supported: int) -> None:
        super().__init__(message, path=path)
        self.found = found
        self.supported = supported


class JobNotFound(LiteTasksError):
    """No job has the given id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"No job with id {job_id!r}.")
        self.job_id = job_id


class LeaseLost(LiteTasksError):
    """A worker tried to record an outcome of a job that it no longer owns."""

    def __init__(self, job_id: str, worker_id: str) -> None:
        super().__init__(
            f"Job {job_id!r} is no longer owned by worker {worker_id!r}; its outcome was discarded."
        )
        self.job_id = job_id
        self.worker_id = worker_id


class WorkerLost(LiteTasksError):
    """The worker running the task stopped without recording an outcome."""


class JobTooBig(LiteTasksError):
    """The stored row of a job is too big for a worker to claim it (SQLite's length limit)."""


class MalformedJob(LiteTasksError):
    """The stored row of a job holds values litetasks cannot read (written by other code)."""


class TaskNotAllowed(LiteTasksError):
    """A stored row names something that is not a task this backend may run."""


class TaskNotFound(TaskNotAllowed):
    """This worker did not find a row's task in the code it loaded; a worker that has it may.

    ``reason`` says how: ``"outside"`` (its module is not in this worker's installed apps; it
    was not imported), ``"import"`` (importing the module failed), ``"missing"`` (the module has
    no such name), ``"not_task"`` (the name is not a ``@task``). The worker puts such a task
    back to READY for another worker (or a restarted pool), and fails it with this error
    after ``OPTIONS["not_found_delays"]``.
    """

    def __init__(self, message: str, *, task_path: str, reason: str) -> None:
        super().__init__(message)
        self.task_path = task_path
        self.reason = reason


class TaskInterrupted(BaseException):
    """Raised inside a running task to stop it.

    A ``BaseException``, as ``asyncio.CancelledError`` is, so the task's own ``except
    Exception`` blocks do not swallow it.
    """


class TaskTimeout(TaskInterrupted):
    """The task ran longer than its ``timeout``."""


class TaskCancelled(TaskInterrupted):
    """The task was cancelled while it ran."""
