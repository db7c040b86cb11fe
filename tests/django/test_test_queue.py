"""The queue file between Django's ``setup_test_environment()`` and its teardown (what
``manage.py test`` and pytest-django call): this test process's own, unless
``OPTIONS["test_path"]`` says otherwise (issue 14, item 3). The real runners are in
test_project_setup.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from django.test.utils import setup_test_environment, teardown_test_environment

from litetasks._django.compat import task_backends
from litetasks.testing import drain
from tests import tasks

LITE = "litetasks.backend.SQLiteBackend"


@pytest.fixture
def test_environment() -> Iterator[None]:
    setup_test_environment()
    try:
        yield
    finally:
        teardown_test_environment()


def configured(tmp_path: Path, **options: Any) -> Any:
    return override_settings(
        TASKS={
            "default": {
                "BACKEND": LITE,
                "OPTIONS": {"path": str(tmp_path / "dev.sqlite3"), **options},
            }
        }
    )


def test_tests_get_a_fresh_file_of_their_own_and_the_development_file_back_after(
    tmp_path: Path,
) -> None:
    with configured(tmp_path):
        backend = task_backends["default"]
        development = tasks.noop.enqueue()
        setup_test_environment()
        try:
            path = backend.config.store.path
            assert path.name == "test_dev.sqlite3" and path.parent != tmp_path
            assert drain() == 0  # the development task is not in it
            tasks.noop.enqueue()
            assert drain() == 1
        finally:
            teardown_test_environment()
        assert backend.config.store.path == tmp_path / "dev.sqlite3"
        development.refresh()
        assert development.status == "READY"


@pytest.mark.usefixtures("test_environment")
def test_test_path_names_the_file_tests_use(tmp_path: Path) -> None:
    with configured(tmp_path, test_path=str(tmp_path / "shared-in-tests.sqlite3")):
        assert task_backends["default"].config.store.path == tmp_path / "shared-in-tests.sqlite3"
    with configured(tmp_path, test_path="tests.sqlite3"), override_settings(BASE_DIR=tmp_path):
        assert task_backends["default"].config.store.path == tmp_path / "tests.sqlite3"


@pytest.mark.usefixtures("test_environment")
def test_test_path_false_opts_out(tmp_path: Path) -> None:
    with configured(tmp_path, test_path=False):
        assert task_backends["default"].config.store.path == tmp_path / "dev.sqlite3"


@pytest.mark.parametrize("value", [True, "", 3])
def test_a_bad_test_path_is_refused(tmp_path: Path, value: Any) -> None:
    with configured(tmp_path, test_path=value):
        [error] = [m for m in task_backends["default"].check() if m.id == "litetasks.E005"]
    assert error.msg == (
        "TASKS['default']['OPTIONS']['test_path'] must be a file path, None (a fresh file per "
        f"test process) or False (tests use 'path') (got {value!r})."
    )


@pytest.mark.usefixtures("test_environment")
def test_each_alias_gets_its_own_test_file(tmp_path: Path) -> None:
    aliases = {
        "default": {"BACKEND": LITE, "OPTIONS": {"path": str(tmp_path / "tasks.sqlite3")}},
        "other": {"BACKEND": LITE, "OPTIONS": {"path": str(tmp_path / "tasks-other.sqlite3")}},
    }
    with override_settings(TASKS=aliases):
        default, other = (task_backends[a].config.store.path for a in ("default", "other"))
    assert (default.name, other.name) == ("test_tasks.sqlite3", "test_tasks-other.sqlite3")
    assert default.parent == other.parent != tmp_path
