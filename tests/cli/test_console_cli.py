"""``litetasks delete`` (the console's delete, on the command line)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from litetasks._django.compat import task_backends
from litetasks.exceptions import JobNotFound
from tests import tasks
from tests.harness import invoke


@pytest.fixture
def backend(lite_settings: dict[str, object]) -> Iterator[object]:
    yield task_backends["default"]


def test_delete_removes_tasks_and_names_the_ones_it_could_not(backend) -> None:  # type: ignore[no-untyped-def]
    ready = tasks.noop.enqueue().id
    claimed = tasks.noop.enqueue().id
    backend.store.claim("w", limit=2)
    kept = tasks.noop.enqueue().id

    result = invoke(CliRunner(), "delete", kept, claimed, "f" * 32)

    assert result.exit_code == 1
    assert f"{kept}: deleted" in result.stdout
    assert f"{claimed}: running" in result.stdout
    assert f"{'f' * 32}: not found" in result.stdout
    with pytest.raises(JobNotFound):
        backend.store.get(kept)
    assert backend.store.get(ready).state.value == "RUNNING"


def test_delete_without_ids_says_what_to_give(backend) -> None:  # type: ignore[no-untyped-def]
    result = invoke(CliRunner(), "delete")

    assert result.exit_code == 2
    assert "Give the ids of the tasks to delete." in result.stderr
