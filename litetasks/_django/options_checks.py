"""System checks for task code that moves between backends (litetasks.W010, litetasks.W011).

Registered globally (not through ``SQLiteBackend.check``), so they also run when litetasks is
no longer any alias's backend: that is when they matter.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

from django.core import checks
from django.utils.module_loading import autodiscover_modules

from .compat import InvalidTaskBackend, Task, task_backends
from .options import declared_options, options_functions
from .periodic import declared_in_code
from .task import LiteTask

__all__ = ["portability_checks"]


def portability_checks(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn about litetasks options and schedules that the configured backends ignore."""
    autodiscover_modules("tasks")  # where tasks and periodic() declarations usually live
    return [*_ignored_options(), *_ignored_schedules()]


checks.register(portability_checks)


def _honours_litetasks(alias: str) -> tuple[bool, str]:
    """Whether the backend of ``alias`` runs litetasks' options, and its class path."""
    try:
        backend = task_backends[alias]
    except InvalidTaskBackend:
        return True, "?"  # Django's own checks report a missing or broken alias
    kind = type(backend)
    return issubclass(backend.task_class, LiteTask), f"{kind.__module__}.{kind.__qualname__}"


def _task_of(func: Callable[..., Any]) -> Task | None:
    """The ``Task`` a module made of ``func`` with ``@task``, if it is bound at module level."""
    module = sys.modules.get(func.__module__)
    found = getattr(module, func.__qualname__, None) if module is not None else None
    return found if isinstance(found, Task) and found.func is func else None


def _ignored_options() -> Iterator[checks.CheckMessage]:
    for func in options_functions():
        task = _task_of(func)
        if task is None:
            continue
        honoured, kind = _honours_litetasks(task.backend)
        if honoured:
            continue
        names = ", ".join(declared_options(func))
        yield checks.Warning(
            f"Task {task.module_path!r} declares litetasks options ({names}) that backend "
            f"{task.backend!r} ({kind}) ignores.",
            hint="The task runs there without them (one attempt, no timeout, not unique, no "
            "hooks). Use the target's own means for what you need, or keep this task on a "
            "litetasks alias; see 'When you outgrow one machine' in the litetasks README.",
            obj=task.module_path,
            id="litetasks.W010",
        )


def _ignored_schedules() -> Iterator[checks.CheckMessage]:
    for alias, names in declared_in_code().items():
        honoured, kind = _honours_litetasks(alias)
        if honoured:
            continue
        yield checks.Warning(
            f"Periodic schedules {', '.join(map(repr, names))} are declared with periodic() "
            f"for backend {alias!r} ({kind}), which does not run them: only a litetasks "
            "pool enqueues periodic tasks.",
            hint="Keep a litetasks alias for them and run 'litetasks run --backend ALIAS', or "
            "use the target's scheduler (cron, rq-scheduler, Celery beat) and remove the "
            "periodic() calls.",
            id="litetasks.W011",
        )
