"""``LiteTask``: Django's ``Task`` with the options litetasks adds, and retry back-off policies.

``SQLiteBackend.task_class`` is ``LiteTask``, so ``@task(...)`` of a litetasks backend accepts::

    @task(max_attempts=5, backoff=exponential(cap=600), retry_on=(IOError,), timeout=30,
          unique=True, on_failure=alert_admins)
    def sync_account(account_id): ...

A task without these options is an ordinary ``Task``: code written for litetasks imports and
runs on any other backend as long as it does not pass them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._store.records import Hook
from .compat import InvalidTask, Task, TaskResult
from .options import apply_declared

__all__ = ["Backoff", "LiteTask", "check_options", "exponential", "fixed", "hooks_of", "unique_key"]

Backoff = Callable[[BaseException, TaskResult], "float | None"]
"""Decides a failed attempt's fate: seconds until the next attempt, or None not to retry.

Called with the exception and the task's result (``len(result.worker_ids)`` is the number of
the attempt that failed), as Django's retry proposal (new-features #142) describes.
"""


@dataclass(frozen=True, slots=True)
class exponential:  # lower case: used like a function, backoff=exponential(cap=600)
    """Wait ``base * factor ** (attempt - 1)`` seconds, at most ``cap``, minus random jitter.

    ``jitter`` is the fraction that may be taken off at random (0: none, 1: "full jitter"),
    so tasks that failed together do not all retry at the same moment. A value (comparable,
    hashable, picklable), as every field of a ``Task`` should be.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.cap < 0 or not 0 <= self.jitter <= 1:
            raise ValueError(
                "exponential() needs base >= 0, factor >= 1, cap >= 0 and 0 <= jitter <= 1 "
                f"(got base={self.base!r}, factor={self.factor!r}, cap={self.cap!r}, "
                f"jitter={self.jitter!r})."
            )

    def __call__(self, exc: BaseException, result: TaskResult) -> float:
        attempt = max(1, len(result.worker_ids))
        delay = min(self.cap, self.base * self.factor ** min(attempt - 1, 64))
        return delay * (1 - self.jitter * random.random())


@dataclass(frozen=True, slots=True)
class fixed:  # lower case: used like a function, backoff=fixed(60)
    """Wait the same ``seconds`` before every retry."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"fixed() needs seconds >= 0 (got {self.seconds!r}).")

    def __call__(self, exc: BaseException, result: TaskResult) -> float:
        return self.seconds


DEFAULT_BACKOFF = exponential()


@dataclass(frozen=True, slots=True, kw_only=True)
class LiteTask(Task):
    """A ``Task`` with retries, a timeout, uniqueness and completion hooks.

    - ``max_attempts``: how many times the task may run in all (1: no retries).
    - ``backoff``: a ``Backoff``; default ``exponential()`` (1 s, 2 s, 4 s ... at most 1 h,
      with jitter).
    - ``retry_on`` / ``no_retry_on``: exception classes that are / are not retried (default:
      every ``Exception``, and ``TaskTimeout``; never ``TaskCancelled``).
    - ``timeout``: seconds an attempt may run before it is interrupted with ``TaskTimeout``.
    - ``unique``: True, or a function of the task's arguments returning a key: enqueueing a
      twin of a READY or RUNNING task returns that task's result instead of a new one.
    - ``on_success`` / ``on_failure`` / ``on_finish``: tasks of the same backend, enqueued with
      the finished task's result id as their one argument, in the transaction that records
      the outcome.
    """

    max_attempts: int = 1
    backoff: Backoff | None = None
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    no_retry_on: tuple[type[BaseException], ...] = ()
    timeout: float | None = None
    unique: bool | Callable[..., Any] = False
    on_success: Task | None = None
    on_failure: Task | None = None
    on_finish: Task | None = None

    def __post_init__(self) -> None:
        # Options stacked under @task with litetasks.options (the portable form).
        apply_declared(self, _option_defaults())
        # A single class is accepted where a tuple is expected (as ``except`` accepts both).
        for name in ("retry_on", "no_retry_on"):
            value = getattr(self, name)
            if isinstance(value, (type, list)):
                object.__setattr__(
                    self, name, (value,) if isinstance(value, type) else tuple(value)
                )
        Task.__post_init__(self)  # not super(): slots=True makes a new class


@functools.cache
def _option_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(LiteTask) if f.name not in _TASK_FIELDS}


_TASK_FIELDS = frozenset(f.name for f in dataclasses.fields(Task))


def check_options(task: LiteTask) -> None:
    """Raise ``InvalidTask`` naming the option of ``task`` that is wrong and what it takes."""
    name = task.module_path
    attempts = task.max_attempts
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise InvalidTask(
            f"max_attempts of {name!r} must be a whole number >= 1 (got {attempts!r})."
        )
    if task.backoff is not None and not callable(task.backoff):
        raise InvalidTask(
            f"backoff of {name!r} must be a function (exception, result) -> seconds or None, "
            f"such as litetasks.exponential() (got {task.backoff!r})."
        )
    for option in ("retry_on", "no_retry_on"):
        classes = getattr(task, option)
        if not isinstance(classes, tuple) or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in classes
        ):
            raise InvalidTask(
                f"{option} of {name!r} must be an exception class or a tuple of them "
                f"(got {classes!r})."
            )
    timeout = task.timeout
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
    ):
        raise InvalidTask(
            f"timeout of {name!r} must be a number of seconds > 0, or None (got {timeout!r})."
        )
    if not isinstance(task.unique, bool) and not callable(task.unique):
        raise InvalidTask(
            f"unique of {name!r} must be True, False or a function of the task's arguments "
            f"returning a str key (got {task.unique!r})."
        )
    _check_hooks(task)


def _check_hooks(task: LiteTask) -> None:
    for when in ("success", "failure", "finish"):
        hook = getattr(task, f"on_{when}")
        if hook is None:
            continue
        if not isinstance(hook, Task):
            raise InvalidTask(
                f"on_{when} of {task.module_path!r} must be a task (a function decorated with "
                f"@task), got {hook!r}."
            )
        if hook.backend != task.backend:
            raise InvalidTask(
                f"on_{when} of {task.module_path!r} is a task of backend {hook.backend!r}; hooks "
                f"are enqueued in the same queue file, so it must use {task.backend!r}."
            )


def unique_key(task: Task, args: Any, kwargs: Any) -> str | None:
    """The key that keeps a unique task's calls apart (None: not unique): ``unique=True``
    keys on the JSON-normal arguments, a function on what it returns."""
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


def hooks_of(task: Task) -> tuple[Hook, ...]:
    """The tasks ``task`` enqueues when it finishes (``on_success``, ``on_failure``,
    ``on_finish``), as the row stores them."""
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
