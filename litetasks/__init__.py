"""Background tasks for Django with no broker: a WAL-mode SQLite file is the queue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .exceptions import (
    ConfigurationError,
    JobNotFound,
    JobTooBig,
    LeaseLost,
    LiteTasksError,
    MalformedJob,
    SchemaVersionError,
    StoreError,
    TaskCancelled,
    TaskInterrupted,
    TaskNotAllowed,
    TaskNotFound,
    TaskTimeout,
    WorkerLost,
)

if TYPE_CHECKING:
    from ._django.api import Call, enqueue_many, enqueue_on_commit
    from ._django.options import options
    from ._django.periodic import periodic
    from ._django.task import LiteTask, exponential, fixed

# These need Django; they load on first use, so the store layer can be imported without it.
_LAZY = {
    "Call": "_django.api",
    "enqueue_many": "_django.api",
    "enqueue_on_commit": "_django.api",
    "options": "_django.options",
    "periodic": "_django.periodic",
    "LiteTask": "_django.task",
    "exponential": "_django.task",
    "fixed": "_django.task",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'litetasks' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0.dev0"

__all__ = [
    "Call",
    "ConfigurationError",
    "JobNotFound",
    "JobTooBig",
    "LeaseLost",
    "LiteTask",
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
    "__version__",
    "enqueue_many",
    "enqueue_on_commit",
    "exponential",
    "fixed",
    "options",
    "periodic",
]
