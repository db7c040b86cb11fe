"""``litetasks demo``, the README's first command, run the way a newcomer runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from litetasks._cli.demo import DEFERRED, MIN_TASKS, build_plan, run_demo

# Of 200 tasks, one charge_card fails on purpose; 199 succeed, 2 of them on the "emails" queue.
TASKS = 200


def run_demo_command(tmp_path: Path, *args: str, columns: int | None = None) -> str:
    """Run ``litetasks demo --tasks 200`` in a clean environment; return its output."""
    cwd, temp = tmp_path / "cwd", tmp_path / "tmp"
    temp.mkdir()
    # The folder it runs from, and the settings variable, have nothing to do with the demo.
    (cwd / "demoapp").mkdir(parents=True)
    (cwd / "demoapp" / "__init__.py").write_text("raise ImportError('not the demo app')\n")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "TMPDIR": str(temp),
        "DJANGO_SETTINGS_MODULE": "unrelated.settings",
    }
    if columns:
        env["COLUMNS"] = str(columns)
    done = subprocess.run(
        [sys.executable, "-m", "litetasks", "demo", "--tasks", str(TASKS), *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    return done.stdout


def printed_path(pattern: str, output: str) -> Path:
    match = re.search(pattern, output)
    assert match, output
    return Path(match.group(1))


@pytest.mark.slow
def test_demo_runs_every_kind_of_task_reports_them_and_removes_its_project(
    tmp_path: Path,
) -> None:
    output = run_demo_command(tmp_path, columns=200)

    assert "199 of 200 tasks SUCCESSFUL, 1 FAILED" in output
    assert re.search(r"SUCCESSFUL\W+197\W+2\W+199\W", output), output  # default, emails, total
    assert re.search(r"FAILED\W+1\W+0\W+1\W", output), output
    assert "'demoapp.tasks.PaymentDeclined'" in output
    assert "demoapp.tasks.PaymentDeclined: card for order 1000 was declined" in output
    assert "High priority ran first." in output
    assert f"{DEFERRED} send_reminder.using(run_after=now + 2 s) ran" in output
    assert "none early" in output
    assert "'welcome email sent to user" in output
    assert "saw its own result id, attempt 1" in output
    assert "tasks/s" in output
    assert 'TASKS = {"default": {"BACKEND": "litetasks.backend.SQLiteBackend"}}' in output
    project = printed_path(r"Removed the demo project (\S+) ", output)
    assert project.parent == tmp_path / "tmp"
    assert not project.exists()
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.slow
def test_demo_keep_leaves_a_project_that_the_printed_status_command_reads(
    tmp_path: Path,
) -> None:
    output = run_demo_command(tmp_path, "--keep")  # 80 columns: paths must not wrap

    project = printed_path(r"Kept the demo project in (\S+)\n", output)
    assert (project / "tasks.sqlite3").is_file()
    assert (project / "demoapp" / "tasks.py").is_file()
    command = re.search(r"inspect it: litetasks (status .*)\n", output)
    assert command, output
    status = subprocess.run(
        [sys.executable, "-m", "litetasks", *command.group(1).split(), "--json"],
        check=False,
        cwd=tmp_path / "cwd",
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    queues = json.loads(status.stdout)["queues"]
    assert queues["default"] == {
        "READY": 0,
        "RUNNING": 0,
        "FAILED": 1,
        "SUCCESSFUL": 197,
        "FORWARDED": 0,
    }
    assert queues["emails"] == {
        "READY": 0,
        "RUNNING": 0,
        "FAILED": 0,
        "SUCCESSFUL": 2,
        "FORWARDED": 0,
    }


def test_demo_refuses_a_batch_too_small_to_hold_every_kind_of_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    assert run_demo(tasks=MIN_TASKS - 1) == 2

    assert f"--tasks must be at least {MIN_TASKS} (got {MIN_TASKS - 1})" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_demo_refuses_to_run_where_django_settings_are_already_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    assert run_demo(tasks=TASKS) == 2  # this test process runs on tests.settings

    assert "Django settings are already loaded" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("total", [MIN_TASKS, 200, 2000, 2001])
def test_plan_holds_every_kind_of_task_low_priority_first_and_high_priority_last(
    total: int,
) -> None:
    plan = build_plan(total)

    kinds = Counter(call.task_name for call in plan)
    assert len(plan) == total
    assert plan[0].task_name == "compact_archive"
    assert plan[-1].task_name == "page_on_call"
    assert kinds["charge_card"] == max(1, total // 200)
    assert kinds["send_reminder"] == DEFERRED
    assert [call.delay_s > 0 for call in plan].count(True) == DEFERRED
    assert {"send_welcome_email", "report_attempt"} <= set(kinds)
    assert build_plan(total) == plan  # the same batch every time
