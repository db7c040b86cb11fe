"""The one place that knows whether ``django.tasks`` (Django 6) or the backport provides tasks.

Django 6.x ships ``django.tasks``; Django 5.2 needs the ``django-tasks`` backport (>= 0.12), whose
module is ``django_tasks`` and whose exceptions carry older names. Everything else in litetasks
imports these names from here.
"""

from __future__ import annotations

from importlib.util import find_spec

__all__ = [
    "FRAMEWORK",
    "TASK_REFRESH_ATTRS",
    "BaseTaskBackend",
    "InvalidTask",
    "InvalidTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]

if find_spec("django.tasks") is not None:
    from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TASK_REFRESH_ATTRS, TaskError
    from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    FRAMEWORK = "django.tasks"
else:  # pragma: no cover - exercised by the Django 5.2 CI job
    # Importing the backport's checks and signals wires its logging and system checks, which
    # its AppConfig would otherwise do: users then need not add "django_tasks" to INSTALLED_APPS.
    import django_tasks.checks  # noqa: F401
    from django_tasks import task_backends
    from django_tasks.backends.base import (
        BaseTaskBackend,
    )
    from django_tasks.base import (
        TASK_REFRESH_ATTRS,
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
    )
    from django_tasks.exceptions import (
        InvalidTaskBackendError as InvalidTaskBackend,
    )
    from django_tasks.exceptions import (
        InvalidTaskError as InvalidTask,
    )
    from django_tasks.exceptions import (
        TaskResultDoesNotExist,
    )
    from django_tasks.signals import (
        task_enqueued,
        task_finished,
        task_started,
    )
    from django_tasks.utils import normalize_json

    FRAMEWORK = "django_tasks"
