"""Helpers for a project's own tests: run enqueued tasks without a worker process."""

from __future__ import annotations

from collections.abc import Collection

from ._django.backend import SQLiteBackend
from ._django.compat import task_backends
from ._runtime.execution import TaskRunner
from ._runtime.pool import WorkerPool
from ._store.config import WorkerConfig
from ._store.enqueueing import new_job_id
from .exceptions import ConfigurationError

__all__ = ["drain"]


def drain(alias: str = "default", queues: Collection[str] | None = None) -> int:
    """Run every due task of backend ``alias`` in this thread; return how many ran.

    Uses the real worker code, so results, signals and errors are what ``litetasks run`` gives.
    Tasks enqueued by the tasks themselves run too, if they are due.
    """
    backend = task_backends[alias]
    if not isinstance(backend, SQLiteBackend):
        raise ConfigurationError(
            f"TASKS[{alias!r}] uses {type(backend).__name__}, not litetasks' SQLiteBackend; "
            "drain() only runs litetasks queues."
        )
    pool = WorkerPool(
        store_factory=lambda: backend.store,
        runner_factory=lambda worker_id, translate: TaskRunner(
            backend, worker_id, translate=translate
        ),
        config=WorkerConfig(queues=None if queues is None else tuple(queues), burst=True),
        worker_id=f"drain-{new_job_id()[-12:]}",
    )
    store = backend.store
    pool.register(store)
    ran = 0
    try:
        while pool.run_once(store):
            ran += 1
    finally:
        pool.close()  # its interrupter's thread, started by the first task, and its connection
        store.unregister_worker(pool.worker_id)
    return ran
