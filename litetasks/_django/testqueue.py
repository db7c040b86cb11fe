"""The queue file under a test runner: one per test process, like the test database.

``manage.py test`` (Django's ``DiscoverRunner``) and pytest-django both call
``django.test.utils.setup_test_environment()`` before the tests and
``teardown_test_environment()`` after; in between, a backend uses a fresh queue file instead of
the development one, so ``drain()`` in a test never runs (and fails) a task a developer
enqueued under ``runserver``. The file lives in a temporary folder of the test run, one file per
process (parallel test processes each get their own, named like Django's test databases:
``test_tasks_1.sqlite3``, ``test_tasks_2.sqlite3``), and the folder is removed when the process
exits. ``OPTIONS["test_path"]`` names a file to use instead, or ``False`` to opt out.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from multiprocessing import util as multiprocessing_util
from pathlib import Path

__all__ = ["in_test_environment", "queue_path_for_tests"]

# The folder of this test run (made by the first process that needed one) and, by process id,
# each process's own folder: a forked test process makes its own inside the run's.
_run_folder: list[Path] = []
_folders: dict[int, Path] = {}


def in_test_environment() -> bool:
    """Whether ``setup_test_environment()`` ran and ``teardown_test_environment()`` did not.

    Django keeps no public flag for it; its ``_TestState.saved_data`` lives exactly that long.
    Cheap when tests never ran here: ``django.test.utils`` is then not even imported.
    """
    utils = sys.modules.get("django.test.utils")
    if utils is None:
        return False
    state = vars(utils).get("_TestState")
    return state is not None and hasattr(state, "saved_data")


def queue_path_for_tests(path: Path) -> Path:
    """A fresh queue file for this test process, named after ``path``: ``test_tasks.sqlite3``."""
    return _own_folder() / f"test_{path.stem}{_worker_suffix()}{path.suffix}"


def _own_folder() -> Path:
    pid = os.getpid()
    folder = _folders.get(pid)
    if folder is None or not folder.is_dir():
        parent = _run_folder[0] if _run_folder and _run_folder[0].is_dir() else None
        folder = Path(tempfile.mkdtemp(prefix="litetasks-test-", dir=parent))
        if parent is None:
            _run_folder[:] = [folder]
        _folders[pid] = folder
        # At exit, also in a process of a multiprocessing pool (Django's parallel test runner),
        # which leaves by os._exit() and so runs no atexit handler, but runs these finalizers.
        multiprocessing_util.Finalize(None, _remove, args=(folder, pid), exitpriority=0)
    return folder


def _remove(folder: Path, pid: int) -> None:
    if os.getpid() == pid:  # never a folder of the parent, from a forked child
        shutil.rmtree(folder, ignore_errors=True)


def _worker_suffix() -> str:
    """``_1``, ``_2`` in Django's parallel test processes (as its test databases); ``_gw0`` ...
    under pytest-xdist; nothing in a single test process."""
    runner = sys.modules.get("django.test.runner")
    worker_id = vars(runner).get("_worker_id", 0) if runner is not None else 0
    if worker_id:
        return f"_{worker_id}"
    xdist = os.environ.get("PYTEST_XDIST_WORKER")
    return f"_{xdist}" if xdist else ""
