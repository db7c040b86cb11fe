"""Shared fixtures. Django is configured from tests/settings.py before any test imports it."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import django
import pytest
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

REPO = Path(__file__).resolve().parent.parent


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
    from litetasks.compat import task_backends

    return task_backends["default"]
