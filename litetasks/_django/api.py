"""Functions beyond DEP 0014 that work with any task backend, and best with litetasks.

``enqueue_many`` and ``enqueue_on_commit`` take a plain ``django.tasks`` ``Task``: on another
backend they fall back to what that backend can do, so code using them keeps running there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import transaction

from .backend import Call, SQLiteBackend, call_arguments
from .compat import Task, TaskResult
from .values import normalized_arguments

__all__ = ["Call", "enqueue_many", "enqueue_on_commit"]

logger = logging.getLogger(__name__)


def enqueue_many(
    task: Task, calls: Iterable[Sequence[Any] | Mapping[str, Any] | Call]
) -> list[TaskResult]:
    """Enqueue ``task`` once per call and return the results, in the order of ``calls``.

    Each call is a tuple (or list) of positional arguments, a dict of keyword arguments, or
    ``Call(*args, **kwargs)`` for both. On litetasks all calls are validated first and stored
    in one transaction, all or nothing, and ``task_enqueued`` is sent once per task; on other
    backends each is enqueued in turn.
    """
    backend = task.get_backend()
    if isinstance(backend, SQLiteBackend):
        return backend.enqueue_many(task, calls)
    return [task.enqueue(*args, **kwargs) for args, kwargs in map(call_arguments, calls)]


def enqueue_on_commit(
    task: Task, *args: Any, using: str | None = None, **kwargs: Any
) -> TaskResult | None:
    """Enqueue ``task`` when the current transaction of database ``using`` commits.

    Inside ``transaction.atomic()`` it returns None: nothing is enqueued (and no worker can see
    the task) until the outermost block commits, and nothing at all if it rolls back; the
    ``task_enqueued`` signal tells the result then. Outside a transaction (autocommit) the task
    is enqueued at once and its ``TaskResult`` returned, as ``task.enqueue`` does. The
    arguments are checked now, so a value that is not JSON raises here, inside the
    transaction. If the enqueue itself fails after the commit, the error is logged and raised
    from the commit (the app's data is committed either way: see "Transactional enqueue" in
    the README for the crash window). (``using`` is this function's own: pass a task keyword
    argument named ``using`` through ``task.enqueue`` in your own ``transaction.on_commit``
    instead.)
    """
    task.get_backend().validate_task(task)
    normalized_arguments(args, kwargs, task.module_path)
    if not transaction.get_connection(using).in_atomic_block:
        # No transaction to wait for: on_commit() would run it now (or refuse manual
        # transaction management, which it still does here).
        transaction.on_commit(_nothing, using=using)
        return task.enqueue(*args, **kwargs)

    def enqueue() -> None:
        try:
            task.enqueue(*args, **kwargs)
        except Exception:
            logger.exception(
                "Enqueueing %s after the transaction committed failed; the task was not stored",
                task.module_path,
            )
            raise

    transaction.on_commit(enqueue, using=using, robust=False)
    return None


def _nothing() -> None:
    return None
