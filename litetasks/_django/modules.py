"""Which module a worker may import for a stored row: a task's, never code that runs at import.

A row names its task by dotted path, and a worker imports that path's module to find it. A row
can be written by anyone with write access to the queue file, so the path is data, not code:
importing a module runs its top-level code. Two rules decide, the same at enqueue
(``SQLiteBackend.check_task_module``) and in the worker (``SQLiteBackend._import_task``):

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

__all__ = ["is_own_package", "refusal"]

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
