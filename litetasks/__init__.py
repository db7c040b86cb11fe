"""Background tasks for Django with no broker: a WAL-mode SQLite file is the queue."""

from __future__ import annotations

from .exceptions import (
    ConfigurationError,
    JobNotFound,
    LeaseLost,
    LiteTasksError,
    SchemaVersionError,
    StoreError,
    TaskNotAllowed,
    WorkerLost,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "ConfigurationError",
    "JobNotFound",
    "LeaseLost",
    "LiteTasksError",
    "SchemaVersionError",
    "StoreError",
    "TaskNotAllowed",
    "WorkerLost",
    "__version__",
]
