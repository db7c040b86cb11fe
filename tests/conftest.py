"""Shared fixtures. Django is configured from tests/settings.py before any test imports it."""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.test import override_settings
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
# One folder for the session's default queue file, removed at exit (tests/settings.py reads it).
if not os.environ.get("LITETASKS_TEST_DIR"):
    _session_dir = tempfile.mkdtemp(prefix="litetasks-tests-")
    os.environ["LITETASKS_TEST_DIR"] = _session_dir
    atexit.register(shutil.rmtree, _session_dir, ignore_errors=True)
django.setup()

# After django.setup(): they read settings when imported.
from litetasks._django.compat import task_backends  # noqa: E402
from tests.harness import FAST, QUEUES, Pool, ProcessGroup  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# What the test process may still have open once every test ran: half of what select() takes
# (FD_SETSIZE, 1024). A fast run ends near 100; a connection kept per test passed 1,500.
MAX_OPEN_DESCRIPTORS = 512


@pytest.fixture(scope="session", autouse=True)
def no_descriptor_leak() -> Iterator[None]:
    """Fail the run (an error at the last test's teardown) if descriptors were left open."""
    yield
    folder = Path("/proc/self/fd")
    if not folder.is_dir():
        return
    targets: collections.Counter[str] = collections.Counter()
    for fd in folder.iterdir():
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed since
            targets[Path(os.readlink(fd)).name] += 1
    opened = sum(targets.values())
    assert opened <= MAX_OPEN_DESCRIPTORS, (
        f"{opened} descriptors are open after the run (at most {MAX_OPEN_DESCRIPTORS}): a test or "
        f"litetasks leaves connections, pipes or watchers open. Most common: "
        f"{targets.most_common(5)}"
    )


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """Give every logger back the handlers, level and switches it had before the test.

    ``litetasks run`` in-process, runserver's task lines and a second ``django.setup()`` (which
    applies Django's LOGGING again) add handlers that write to whatever ``sys.stderr`` was then:
    a test runner's buffer, closed when the test ends. A later test's log line (from any thread)
    then printed "--- Logging error ---" into that test's own captured stderr.
    """
    manager = logging.Logger.manager
    loggers = [logging.getLogger()] + [
        logger for logger in list(manager.loggerDict.values()) if isinstance(logger, logging.Logger)
    ]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in loggers]
    yield
    for logger, handlers, level, propagate, disabled in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled
    closed = [
        logger.name
        for logger in [logging.getLogger(), *manager.loggerDict.values()]
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if getattr(getattr(handler, "stream", None), "closed", False)
    ]
    assert not closed, f"loggers left writing to a closed stream: {closed}"


@pytest.fixture
def queue_path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.sqlite3"


@pytest.fixture
def lite_settings(queue_path: Path) -> Iterator[dict[str, object]]:
    """Point the default backend at a fresh queue file for one test."""
    from django.test import override_settings

    tasks = {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "QUEUES": ["default", "emails", "reports"],
            "OPTIONS": {"path": str(queue_path)},
        }
    }
    with override_settings(TASKS=tasks):
        yield tasks


@pytest.fixture
def backend(lite_settings: dict[str, object]):  # type: ignore[no-untyped-def]
    from litetasks._django.compat import task_backends

    return task_backends["default"]


# -- the process harness's fixtures (tests/harness.py) ----------------------------------------


@pytest.fixture
def procs() -> Iterator[ProcessGroup]:
    with ProcessGroup().cleanup() as group:
        yield group


@pytest.fixture
def open_pool(tmp_path: Path, procs: ProcessGroup) -> Iterator[Callable[..., Pool]]:
    """Return ``open_pool(**OPTIONS)``: a fresh queue file with those options, here and in
    every ``litetasks run`` the pool starts (through ``tmp_path/pool_settings.py``)."""
    with contextlib.ExitStack() as stack:

        def open_pool_(**options: Any) -> Pool:
            setting = {
                "default": {
                    "BACKEND": "litetasks.backend.SQLiteBackend",
                    "QUEUES": QUEUES,
                    "OPTIONS": {"path": str(tmp_path / "tasks.sqlite3"), **options},
                }
            }
            (tmp_path / "pool_settings.py").write_text(
                f"from tests.settings import *  # noqa: F403\n\nTASKS = {setting!r}\n"
            )
            stack.enter_context(override_settings(TASKS=setting))
            return Pool(tmp_path, procs, task_backends["default"])

        yield open_pool_
    for started in procs.started:  # shown when the test fails
        print(f"\n--- pid {started.pid}: {' '.join(started.proc.args)}\n{started.output}")


@pytest.fixture
def pool(open_pool: Callable[..., Pool]) -> Pool:
    return open_pool(**FAST)
