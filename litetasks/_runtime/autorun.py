"""Run tasks inside ``runserver`` in development, so no second terminal is needed.

Django's autoreloader runs two processes: a parent that watches files and a child (``RUN_MAIN``
set) that serves. The pool runs in the serving child only, as threads (no fork). When a file
changes the child exits; an ``atexit`` hook stops the pool, lets running tasks finish for
``OPTIONS["autorun_grace_s"]`` (5 s) and puts back what is left, and the new child runs the new
code. At Ctrl-C the terminal interrupts both processes, and the parent would SIGKILL the child
0.25 s later: in the parent, litetasks lets the child have its grace period first.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend
    from .pool import WorkerPool

__all__ = [
    "autorun_backends",
    "delay_interrupt",
    "should_autorun",
    "show_task_lines",
    "start_autorun",
    "suppress",
]

logger = logging.getLogger(__name__)

# After its grace period, how long a stopping pool gets to put running tasks back and return.
_RELEASE_WAIT_S = 2.0
# The lines of runserver's console: "[07/Dec/2026 18:10:52] ...".
_RUNSERVER_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"
_RUNSERVER_DATES = "%d/%b/%Y %H:%M:%S"
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

    grace_s = backend.config.autorun_grace_s
    config = dataclasses.replace(backend.config.worker, processes=1, burst=False, grace_s=grace_s)
    pool = build_pool(backend, config)
    thread = threading.Thread(target=pool.run, name=f"litetasks-autorun-{backend.alias}")
    thread.daemon = True
    thread.start()
    from .scheduler import start_scheduler_thread

    start_scheduler_thread(backend, lambda: pool.is_stopping)

    def stop_at_exit() -> None:
        # Running tasks get the grace period; the pool then puts what still runs back to READY
        # (its attempt not counted) and returns. (The reloader's parent waits: delay_interrupt.)
        pool.stop()
        thread.join(grace_s + _RELEASE_WAIT_S)
        pool.stop(force=True)
        thread.join(_RELEASE_WAIT_S)

    atexit.register(stop_at_exit)
    logger.info(
        "litetasks: running tasks in this process (pid=%d, %d threads, queue %s; "
        "running tasks get %g s to finish at a reload or Ctrl-C)",
        os.getpid(),
        config.threads,
        backend.config.store.path,
        grace_s,
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

    argv = sys.argv if argv is None else argv
    here = []  # the backends to run here
    child_graces = []  # the grace periods of the pools runserver's serving child will run
    for alias, params in getattr(settings, "TASKS", {}).items():
        if params.get("BACKEND") != "litetasks.backend.SQLiteBackend":
            continue
        backend = task_backends[alias]
        if not isinstance(backend, SQLiteBackend):
            continue
        decide = functools.partial(
            should_autorun,
            argv,
            debug=bool(settings.DEBUG),
            option=backend.config.autorun,
            under_test="pytest" in sys.modules,
        )
        if decide(os.environ):
            here.append(backend)
        elif _is_reloader_parent(argv, os.environ) and decide({**os.environ, "RUN_MAIN": "true"}):
            child_graces.append(backend.config.autorun_grace_s)
    if here and _management_command(argv) == "runserver":
        show_task_lines(debug=bool(settings.DEBUG))
    if child_graces:
        delay_interrupt(max(child_graces) + _RELEASE_WAIT_S)
    return [start_autorun(backend) for backend in here]


def _is_reloader_parent(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether this is the autoreloader's parent of ``runserver`` (it runs no pool)."""
    reloading = "--noreload" not in argv
    return (
        _management_command(argv) == "runserver" and reloading and environ.get("RUN_MAIN") != "true"
    )


def show_task_lines(*, debug: bool) -> None:
    """Make runserver's console show that tasks run and fail, with Django's default logging.

    Django's default logging prints the ``django`` loggers' INFO lines only when ``DEBUG`` is
    on, and nothing else below WARNING: not the pool's start line, nor (with the Django 5.2
    backport, whose logger is ``django_tasks``) a task's. A project with ``LOGGING`` decides
    for itself.
    """
    from django.conf import settings

    from .._django.compat import FRAMEWORK

    if settings.is_overridden("LOGGING") or settings.LOGGING_CONFIG != "logging.config.dictConfig":
        return
    names = ["litetasks"]
    if not (debug and FRAMEWORK.startswith("django.")):  # else Django's console prints them
        names.append(FRAMEWORK)
    handler = logging.StreamHandler()
    handler.set_name("litetasks-runserver")
    handler.setFormatter(logging.Formatter(_RUNSERVER_FORMAT, _RUNSERVER_DATES))
    for name in names:
        task_logger = logging.getLogger(name)
        if all(h.get_name() != handler.get_name() for h in task_logger.handlers):
            task_logger.addHandler(handler)
        if task_logger.getEffectiveLevel() > logging.INFO:
            task_logger.setLevel(logging.INFO)


class _Interrupt:
    pending = False  # the first Ctrl-C came: waiting for the serving child
    raised = False  # the parent was interrupted (once)


def delay_interrupt(wait_s: float) -> None:
    """In runserver's reloader parent: at Ctrl-C, give the serving child ``wait_s`` to exit.

    The terminal sends SIGINT to both processes. Django's parent would then SIGKILL the child
    0.25 s later, before its pool's grace period. Instead the first SIGINT only arms a timer:
    the parent is interrupted, as Django's is at once, when the child has exited (SIGCHLD),
    when the timer fires, or at a second SIGINT. It then exits 0, as Django's does.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        if _Interrupt.pending and not _Interrupt.raised:
            _Interrupt.raised = True
            raise KeyboardInterrupt

    def on_sigint(signum: int, frame: object) -> None:
        if _Interrupt.pending:
            interrupt(signum, frame)
        _Interrupt.pending = True
        signal.signal(signal.SIGCHLD, interrupt)
        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, wait_s)
        if _child_exited():  # before the SIGCHLD handler was there (it got the SIGINT too)
            interrupt(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)


def _child_exited() -> bool:
    """Whether a child of this process has exited (not reaped: WNOWAIT), or none is left."""
    if not hasattr(os, "waitid"):  # not on macOS: there only SIGCHLD tells
        return False
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True
