"""``litetasks forward`` on the command line: its report, and one-line errors for bad targets."""

from __future__ import annotations

from typing import Any

from django.test import override_settings
from typer.testing import CliRunner

from litetasks._cli.commands import app
from litetasks._django.compat import FRAMEWORK
from tests import tasks
from tests.corruption import corrupt

DUMMY = {"BACKEND": f"{FRAMEWORK}.backends.dummy.DummyBackend", "QUEUES": ["default"]}


def forward(*args: str) -> Any:
    return CliRunner().invoke(app, ["forward", *args], prog_name="litetasks")


def test_forward_reports_what_moved_and_what_was_refused_and_exits_1(lite_settings):
    with override_settings(TASKS={**lite_settings, "target": DUMMY}):
        tasks.add.enqueue(1, 2)
        refused = tasks.add.using(queue_name="emails").enqueue(3, 4)
        dry = forward("--to", "target", "--dry-run")
        result = forward("--to", "target")

    assert "would move      1  tests.tasks.add (queue 'default')" in dry.stdout
    assert "tasks that may reach it twice: at most one per interruption" in dry.stdout
    assert result.exit_code == 1
    assert "1 task(s) moved to 'target', 1 refused" in result.stdout
    assert f"Queue 'emails' is not valid for backend. (stay READY here: {refused.id})" in (
        result.stdout
    )


def test_a_row_that_is_not_utf8_is_refused_by_name_and_the_others_move(lite_settings, queue_path):
    with override_settings(TASKS={**lite_settings, "target": DUMMY}):
        tasks.add.enqueue(1, 2)
        bad = tasks.add.enqueue(3, 4)
        corrupt(queue_path, bad.id, "task_path", "CAST(x'74ff' AS TEXT)")
        dry = forward("--to", "target", "--dry-run")
        result = forward("--to", "target")

    assert "would move      1  tests.tasks.add (queue 'default')" in dry.stdout
    assert result.exit_code == dry.exit_code == 1
    assert "1 task(s) moved to 'target', 1 refused" in result.stdout
    for output in (dry.stdout, result.stdout):
        assert (
            "refused      1  t\ufffd: its row holds values litetasks did not write and cannot "
            "read: column 'task_path' holds b't\\xff' (blob), not text."
        ) in output
        assert f"(stay READY here: {bad.id})" in output


def test_an_unknown_or_same_target_is_one_line_on_stderr(lite_settings):
    unknown, same = forward("--to", "nowhere"), forward("--to", "default")

    assert unknown.exit_code == same.exit_code == 2
    assert unknown.stderr.startswith("litetasks: error: cannot forward to 'nowhere'")
    assert "Configured aliases: default." in unknown.stderr
    assert "to itself" in same.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
