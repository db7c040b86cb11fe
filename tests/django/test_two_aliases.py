"""A task declared for one backend alias and enqueued onto another with ``Task.using(backend=)``.

``using()`` is Django's public API, and Django's reference database backend runs the imported
task ``.using(backend=<the row's alias>)``. What keeps a row from running arbitrary code is that
it names a ``Task`` in a module the workers may import, not the alias it was declared with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from litetasks._django.compat import TaskResultStatus, task_backends
from litetasks.testing import drain
from tests import tasks

LITE = "litetasks.backend.SQLiteBackend"


@pytest.fixture
def two_aliases(tmp_path: Path) -> Iterator[None]:
    queues = ["default", "emails", "reports"]

    def alias(name: str) -> dict[str, object]:
        return {"BACKEND": LITE, "QUEUES": queues, "OPTIONS": {"path": str(tmp_path / name)}}

    with override_settings(TASKS={"default": alias("a"), "other": alias("b")}):
        yield


@pytest.mark.usefixtures("two_aliases")
def test_a_task_enqueued_onto_a_second_alias_with_using_runs_there() -> None:
    result = tasks.add.using(backend="other").enqueue(20, 22)

    assert result.backend == "other"
    assert drain("default") == 0
    assert drain("other") == 1
    result.refresh()
    assert (result.status, result.return_value, result.errors) == (
        TaskResultStatus.SUCCESSFUL,
        42,
        [],
    )
    loaded = task_backends["other"].get_result(result.id)
    assert (loaded.task.backend, loaded.backend, loaded.return_value) == ("other", "other", 42)


@pytest.mark.usefixtures("two_aliases")
def test_a_failing_task_on_a_second_alias_fails_with_its_own_error() -> None:
    # Django's test_task_error_invalid_exception: the task's exception, not a backend mismatch.
    result = tasks.fail_value_error.using(backend="other").enqueue("no such order")

    assert drain("other") == 1
    result.refresh()
    assert result.status is TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is ValueError
    assert "no such order" in error.traceback
