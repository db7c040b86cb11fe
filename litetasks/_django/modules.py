"""Which module a worker may import for a stored row: a task's, never code that runs at import.

A row names its task by dotted path, and a worker imports that path's module to find it. A row
can be written by anyone with write access to the queue file, so the path is data, not code:
importing a module runs its top-level code. Two rules decide, the same at enqueue
(``TaskModules.check_enqueue``) and in the worker (``TaskModules.import_task``):

1. ``refusal`` (here): paths no worker of any project imports. Not a dotted path of identifiers;
   any part named with double underscores (``__main__`` runs a package's command line when
   imported: ``litetasks.__main__`` started a nested supervisor inside a worker; ``__init__``
   runs a package's code a second time); litetasks' own package, which holds no tasks (its
   ``cli``, ``__main__``, ``demo``, ``bench`` would start programs); and Python's standard
   library, which holds no tasks (``antigravity`` opens a web browser, ``this`` prints).
2. The module must be in an installed app's package or in ``OPTIONS["task_modules"]``: a
   project's own code, which Django imports anyway (models, admin, apps).

What else runs at import? Entry points outside app packages (``manage.py``, ``setup.py``,
``wsgi.py``, ``asgi.py``, settings) fall under rule 2 in a standard layout; inside an app, only
``__main__`` is a conventional entry point that runs unguarded (``manage.py`` style scripts
guard theirs with ``if __name__ == "__main__"``), and rule 1 refuses it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.conf import settings

from ..exceptions import TaskNotAllowed, TaskNotFound
from .compat import InvalidTask, Task

__all__ = ["TaskModules", "is_own_package", "refusal"]

_OWN_PACKAGE = __name__.partition(".")[0]  # "litetasks"
_STANDARD = frozenset(sys.stdlib_module_names)  # Python's own modules (3.10+)


def is_own_package(module: str) -> bool:
    return module == _OWN_PACKAGE or module.startswith(_OWN_PACKAGE + ".")


def refusal(task_path: str, not_installed: str) -> str | None:
    """Why no worker imports the module ``task_path`` names, whatever the project; or None.

    ``not_installed`` is the message for a module outside every project's apps (the standard
    library); the caller words it for its backend.
    """
    parts = task_path.split(".")
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        return (
            f"{task_path!r} is not the path of a task (a module and a name, such as "
            "'shop.tasks.send_receipt'); nothing was imported."
        )
    dunder = next((p for p in parts[:-1] if p.startswith("__") and p.endswith("__")), None)
    if dunder is not None:
        return (
            f"{task_path!r} names a module {dunder!r}: no worker imports a module named with "
            "double underscores for a task (a __main__ module runs its program when imported, "
            "an __init__ module runs its package again); it was not imported."
        )
    if is_own_package(parts[0]):
        return (
            f"{task_path!r} is in litetasks' own package, which holds no tasks (its modules "
            "include its command line); it was not imported."
        )
    if parts[0] in _STANDARD:
        return not_installed
    return None


class TaskModules:
    """The modules a backend's workers import tasks from (rule 2 for it), and the import.

    The installed apps are read once the app registry is ready; until then the answers are
    guesses from ``INSTALLED_APPS`` and are not cached (``is_final`` says which).
    """

    def __init__(self, alias: str, task_modules: tuple[str, ...]) -> None:
        self.alias = alias
        self.task_modules = task_modules
        self._allowed_roots: tuple[str, ...] | None = None
        self._allowed_paths: set[str] = set()

    @property
    def is_final(self) -> bool:
        """Whether the answers no longer change (the app registry was ready)."""
        return self._allowed_roots is not None

    def check_enqueue(self, task_path: str) -> None:
        """Refuse (``InvalidTask``) a task whose module a worker would not import."""
        if task_path in self._allowed_paths:
            return
        module = task_path.rpartition(".")[0]
        if module == "__main__" or module.startswith("__main__."):
            raise InvalidTask(
                f"Task {task_path!r} is defined in __main__, which a worker cannot import. "
                "Move it into a module of an installed app."
            )
        refused = refusal(task_path, self.not_installed(task_path))
        if refused is not None:
            raise InvalidTask(f"Task {refused} Move it into a module of an installed app.")
        if not self.is_allowed_module(module):
            raise InvalidTask(
                f"Task {task_path!r} is not in an installed app, so a worker will not import it. "
                f"Add its app to INSTALLED_APPS, or {module!r} to "
                f"TASKS[{self.alias!r}]['OPTIONS']['task_modules']."
            )
        if self.is_final:
            self._allowed_paths.add(task_path)

    def import_task(self, task_path: str) -> Task:
        """Import the ``Task`` ``task_path`` names, if the rules allow it.

        Raises ``TaskNotAllowed`` for a path no worker imports (before importing anything), and
        ``TaskNotFound`` when this worker does not have the task (another worker may): its module
        outside this worker's apps (not imported), not importable here, without that name, or
        not a ``Task`` there. A task declared for another alias is returned as declared.
        """
        refused = refusal(task_path, self.not_installed(task_path))
        if refused is not None:
            raise TaskNotAllowed(refused)
        module_name, _, name = task_path.rpartition(".")
        if not self.is_allowed_module(module_name):
            raise TaskNotFound(self.not_installed(task_path), task_path=task_path, reason="outside")
        try:
            module = __import__(module_name, fromlist=["_"])
        except Exception as exc:
            raise TaskNotFound(
                f"Cannot import {module_name!r} for task {task_path!r}: {exc!r}.",
                task_path=task_path,
                reason="import",
            ) from exc
        return self._checked_task(getattr(module, name, _MISSING), task_path)

    def _checked_task(self, candidate: Any, task_path: str) -> Task:
        """``candidate`` (what the module holds at ``task_path``), if it is a task of ours."""
        if candidate is _MISSING:
            module_name, _, name = task_path.rpartition(".")
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
        # The alias it was declared with does not matter: ``Task.using(backend=...)`` puts a
        # task into another backend's queue, and a worker runs it ``.using`` its own alias.
        return candidate

    def not_installed(self, task_path: str) -> str:
        """The message for a task outside the installed apps and ``task_modules``."""
        return (
            f"{task_path!r} is not in an installed app or in "
            f"TASKS[{self.alias!r}]['OPTIONS']['task_modules']; it was not imported."
        )

    def is_allowed_module(self, module: str) -> bool:
        """Whether ``module`` is in an installed app's package or in ``task_modules``."""
        if self._allowed_roots is None:
            roots = _installed_roots()
            if roots is None:  # the app registry is not ready yet: guess, and do not cache
                allowed = tuple(_settings_roots()) + self.task_modules
            else:
                allowed = self._allowed_roots = roots + self.task_modules
        else:
            allowed = self._allowed_roots
        return any(module == root or module.startswith(root + ".") for root in allowed)


_MISSING = object()


def _installed_roots() -> tuple[str, ...] | None:
    if not apps.ready:
        return None
    return tuple(app.name for app in apps.get_app_configs())


def _settings_roots() -> Iterator[str]:
    for entry in settings.INSTALLED_APPS:
        yield entry.partition(".apps.")[0] if ".apps." in entry else entry
