"""Run tasks inside ``runserver`` in development, so no second terminal is needed.

Django's autoreloader runs two processes: a parent that watches files and a child (``RUN_MAIN``
set) that serves. The pool runs in the serving child only, as threads (no fork). When a file
changes the child exits; an ``atexit`` hook stops the pool, lets running tasks finish for a
short grace period and puts back what is left, and the new child runs the new code.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend
    from .pool import WorkerPool

__all__ = ["autorun_backends", "should_autorun", "start_autorun", "suppress"]

logger = logging.getLogger(__name__)

# A development pool gets this long to finish running tasks when runserver reloads or stops.
AUTORUN_GRACE_S = 5.0
# At exit, how long running tasks get before they are put back (see stop_at_exit).
_EXIT_WAIT_S = 0.1
_MANAGE_SCRIPTS = ("manage.py", "django-admin", "django-admin.py")


def _management_command(argv: Sequence[str]) -> str | None:
    """Return the management command this process runs, or None if it is not ``manage.py``."""
    if not argv:
        return None
    script = Path(argv[0]).name
    if script in _MANAGE_SCRIPTS or (script == "__main__.py" and "django" in argv[0]):
        return argv[1] if len(argv) > 1 else ""
    return None


def should_autorun(
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    debug: bool,
    option: bool | None,
    under_test: bool = False,
) -> bool:
    """Decide whether this process should run an in-process pool.

    ``option`` is ``OPTIONS["autorun"]``: False never; None (the default) only in the serving
    process of ``runserver`` with DEBUG on; True also without DEBUG, and in a production
    server process (anything that is not a management command). Never under ``migrate``,
    ``shell``, ``test`` or any other management command, and never in the reloader's parent.
    """
    if option is False:
        return False
    command = _management_command(argv)
    if command == "runserver":
        reloading = "--noreload" not in argv
        if reloading and environ.get("RUN_MAIN") != "true":
            return False  # the autoreloader's parent: it only watches files
        return debug or option is True
    if command is not None:
        return False
    # A test run is not a server, even with autorun on: tests drain the queue themselves.
    return option is True and not under_test


def start_autorun(backend: SQLiteBackend) -> WorkerPool:
    """Start a thread pool for ``backend`` in this process; stop it when the process exits."""
    from .supervisor import build_pool

    config = dataclasses.replace(
        backend.config.worker, processes=1, burst=False, grace_s=AUTORUN_GRACE_S
    )
    pool = build_pool(backend, config)
    thread = threading.Thread(target=pool.run, name=f"litetasks-autorun-{backend.alias}")
    thread.daemon = True
    thread.start()
    from .scheduler import start_scheduler_thread

    start_scheduler_thread(backend, lambda: pool.is_stopping)

    def stop_at_exit() -> None:
        # Django's autoreloader SIGKILLs the serving process about 0.25 s after Ctrl-C, so a
        # task still running after a brief wait is put back to READY at once (its attempt not
        # counted) rather than left RUNNING under a dead process.
        pool.stop()
        thread.join(_EXIT_WAIT_S)
        pool.stop(force=True)
        thread.join(AUTORUN_GRACE_S)

    atexit.register(stop_at_exit)
    logger.info(
        "litetasks: running tasks in this process (pid=%d, %d threads, queue %s)",
        os.getpid(),
        config.threads,
        backend.config.store.path,
    )
    return pool


class _Suppressed:
    is_set = False


def suppress() -> None:
    """Never autorun in this process: it is a litetasks command (``run``, ``status``, ``bench``).

    ``litetasks run`` runs its own pool, and forks: an autorun thread in it would be a second
    pool, and a thread alive across ``fork()``.
    """
    _Suppressed.is_set = True


def autorun_backends(argv: Sequence[str] | None = None) -> list[WorkerPool]:
    """Start a pool for every litetasks backend that should autorun in this process."""
    if _Suppressed.is_set:
        return []
    from django.conf import settings

    from .._django.backend import SQLiteBackend
    from .._django.compat import task_backends

    pools = []
    for alias, params in getattr(settings, "TASKS", {}).items():
        if params.get("BACKEND") != "litetasks.backend.SQLiteBackend":
            continue
        backend = task_backends[alias]
        if not isinstance(backend, SQLiteBackend):
            continue
        if should_autorun(
            sys.argv if argv is None else argv,
            os.environ,
            debug=bool(settings.DEBUG),
            option=backend.config.autorun,
            under_test="pytest" in sys.modules,
        ):
            pools.append(start_autorun(backend))
    return pools
