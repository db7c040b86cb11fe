"""``litetasks pause`` / ``resume`` and what ``litetasks status`` says about paused things."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings
from typer.testing import CliRunner

from tests import tasks
from tests.harness import invoke

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ADD = "tests.tasks.add"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def with_schedule(queue_path: Path) -> Iterator[None]:
    setting = {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "QUEUES": ["default", "emails", "reports"],
            "OPTIONS": {
                "path": str(queue_path),
                "periodic": {"nightly": {"task": ADD, "cron": "0 3 * * *", "args": [1, 2]}},
            },
        }
    }
    with override_settings(TASKS=setting):
        yield


def test_pause_and_resume_a_queue(runner: CliRunner, backend) -> None:  # type: ignore[no-untyped-def]
    result = invoke(runner, "pause", "emails")
    assert result.exit_code == 0, result.output
    assert "Paused queue 'emails'" in result.stdout
    assert backend.store.pausing.paused_queues() == {"emails"}
    assert "was paused already" in invoke(runner, "pause", "emails").stdout
    result = invoke(runner, "resume", "emails")
    assert result.exit_code == 0, result.output
    assert "Resumed queue 'emails'" in result.stdout
    assert backend.store.pausing.paused_queues() == set()
    assert "was not paused" in invoke(runner, "resume", "emails").stdout


def test_pausing_an_unknown_queue_is_one_line_naming_the_known_ones(
    runner: CliRunner,
    backend,  # type: ignore[no-untyped-def]
) -> None:
    result = invoke(runner, "pause", "emials")
    assert result.exit_code == 2
    assert "Unknown queue 'emials'" in result.stderr
    assert "default, emails, reports" in result.stderr
    assert backend.store.pausing.paused_queues() == set()


def test_status_shows_a_paused_queue_and_how_to_resume_it(runner: CliRunner, backend) -> None:  # type: ignore[no-untyped-def]
    tasks.noop.using(queue_name="emails").enqueue()
    invoke(runner, "pause", "emails")
    data = json.loads(invoke(runner, "status", "--json").stdout)
    assert data["paused_queues"] == ["emails"]
    output = ANSI.sub("", invoke(runner, "status").stdout)
    assert "emails (paused)" in output
    assert "litetasks resume emails" in output


def test_pause_and_resume_a_schedule(runner: CliRunner, with_schedule: None) -> None:
    result = invoke(runner, "pause", "--schedule", "nightly")
    assert result.exit_code == 0, result.output
    assert "Paused schedule 'nightly'" in result.stdout
    [row] = json.loads(invoke(runner, "status", "--json").stdout)["periodic"]
    assert row["paused"] is True
    assert "paused" in ANSI.sub("", invoke(runner, "status").stdout)
    assert invoke(runner, "resume", "--schedule", "nightly").exit_code == 0
    [row] = json.loads(invoke(runner, "status", "--json").stdout)["periodic"]
    assert row["paused"] is False


def test_pausing_an_unknown_schedule_is_one_line(runner: CliRunner, with_schedule: None) -> None:
    result = invoke(runner, "pause", "--schedule", "nighlty")
    assert result.exit_code == 2
    assert "No periodic schedule 'nighlty'" in result.stderr
    assert "nightly" in result.stderr
