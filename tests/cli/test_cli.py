"""The ``litetasks`` command line: help, ``status``, settings discovery, and one-line errors.

Tests that need a fresh Django (finding or failing to find settings) run the real console
script in a subprocess; the rest call the typer app in-process with ``CliRunner``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from typer.testing import CliRunner

from litetasks._django.compat import FRAMEWORK
from litetasks._store.records import JobState
from litetasks.testing import drain
from tests import tasks
from tests.harness import invoke, manage, run_cli, subprocess_env, write_project

IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def assert_one_line_error(stderr: str, returncode: int, expected: str) -> None:
    """The CLI's error contract: non-zero exit, one line on stderr, no traceback."""
    assert returncode != 0
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("litetasks: error: "), stderr
    assert expected in lines[0], stderr


# -- help --------------------------------------------------------------------------------------


def test_help_lists_the_commands(runner: CliRunner) -> None:
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    for command in ("run", "status", "demo"):
        assert re.search(rf"\b{command}\b", result.output)


def test_run_help_lists_its_options(runner: CliRunner) -> None:
    result = invoke(runner, "run", "--help")
    assert result.exit_code == 0
    output = ANSI.sub("", result.output)
    for option in ("--settings", "--pythonpath", "--backend", "--queue", "--threads", "--burst"):
        assert option in output


def test_console_script_prints_help(tmp_path: Path) -> None:
    if not (Path(sys.executable).parent / "litetasks").is_file():
        pytest.skip("the litetasks console script is not installed beside this interpreter")
    done = run_cli("--help", cwd=tmp_path, env=subprocess_env(settings=None))
    assert done.returncode == 0, done.stderr
    assert "Usage: litetasks" in ANSI.sub("", done.stdout)


# -- status ------------------------------------------------------------------------------------


def enqueue_a_mix(queue_name_for_failure: str = "reports") -> None:
    tasks.add.enqueue(1, 2)
    tasks.add.enqueue(3, 4)
    tasks.send_email.enqueue("a@example.com")
    tasks.fail_value_error.using(queue_name=queue_name_for_failure).enqueue()
    assert drain(queues=[queue_name_for_failure]) == 1


def test_status_prints_a_table_of_counts_per_queue_and_state(
    runner: CliRunner, backend, queue_path: Path
) -> None:
    enqueue_a_mix()
    result = invoke(runner, "status")
    assert result.exit_code == 0, result.output
    output = ANSI.sub("", result.stdout)
    header = next(line for line in output.splitlines() if "READY" in line)
    columns = [cell.strip() for cell in re.split(r"[│┃|]", header) if cell.strip()]
    assert columns == ["queue", "READY", "RUNNING", "FAILED", "SUCCESSFUL"]
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃|]", line) if cell.strip()]
        if len(cells) == len(columns) and cells[0] != "queue":
            rows[cells[0]] = [int(c) for c in cells[1:]]
    assert rows == {
        "default": [2, 0, 0, 0],
        "emails": [1, 0, 0, 0],
        "reports": [0, 0, 1, 0],
    }


def test_status_json_matches_the_store(runner: CliRunner, backend, queue_path: Path) -> None:
    enqueue_a_mix()
    result = invoke(runner, "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["backend"] == "default"
    assert Path(data["path"]) == queue_path
    expected: dict[str, dict[str, int]] = {
        queue: {state.value: 0 for state in JobState} for queue in ("default", "emails", "reports")
    }
    for (queue, state), count in backend.store.counts().items():
        expected[queue][state.value] = count
    assert data["queues"] == expected
    assert data["queues"]["default"]["READY"] == 2
    assert data["queues"]["reports"]["FAILED"] == 1


def test_status_of_an_empty_queue_lists_the_configured_queues_at_zero(
    runner: CliRunner, backend
) -> None:
    result = invoke(runner, "status", "--json")
    assert result.exit_code == 0, result.output
    queues = json.loads(result.stdout)["queues"]
    assert set(queues) == {"default", "emails", "reports"}
    assert all(count == 0 for by_state in queues.values() for count in by_state.values())


# -- errors: one line, non-zero, no traceback ---------------------------------------------------


def test_backend_alias_missing_from_tasks_is_one_line(runner: CliRunner, backend) -> None:
    result = invoke(runner, "status", "--backend", "missing")
    assert_one_line_error(
        result.stderr, result.exit_code, "No task backend 'missing' in settings.TASKS"
    )
    assert "configured: default" in result.stderr


def test_alias_that_is_not_a_litetasks_backend_is_one_line(
    runner: CliRunner, lite_settings: dict[str, object]
) -> None:
    tasks_setting = {**lite_settings, "immediate": {"BACKEND": IMMEDIATE}}
    with override_settings(TASKS=tasks_setting):
        for command in ("status", "run"):
            result = invoke(runner, command, "--backend", "immediate")
            assert_one_line_error(result.stderr, result.exit_code, "not litetasks")
            assert "ImmediateBackend" in result.stderr


def test_backend_whose_class_cannot_be_imported_is_one_line(
    runner: CliRunner, lite_settings: dict[str, object]
) -> None:
    tasks_setting = {**lite_settings, "broken": {"BACKEND": "nowhere.Backend"}}
    with override_settings(TASKS=tasks_setting):
        result = invoke(runner, "status", "--backend", "broken")
    assert_one_line_error(result.stderr, result.exit_code, "nowhere.Backend")


def test_unknown_option_in_backend_options_is_one_line(runner: CliRunner, queue_path: Path) -> None:
    tasks_setting = {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "OPTIONS": {"path": str(queue_path), "threadz": 3},
        }
    }
    with override_settings(TASKS=tasks_setting):
        result = invoke(runner, "status")
    assert_one_line_error(result.stderr, result.exit_code, "Unknown option 'threadz'")


def test_unknown_queue_is_one_line_and_nothing_runs(runner: CliRunner, backend) -> None:
    tasks.add.enqueue(1, 2)
    result = invoke(runner, "run", "--burst", "--queue", "default", "--queue", "nope")
    assert_one_line_error(result.stderr, result.exit_code, "Unknown queue 'nope'")
    assert "Configured queues: default, emails, reports" in result.stderr
    assert backend.store.counts() == {("default", JobState.READY): 1}


def test_no_settings_found_is_one_line(tmp_path: Path) -> None:
    done = run_cli("status", cwd=tmp_path, env=subprocess_env(settings=None))
    assert_one_line_error(done.stderr, done.returncode, "No Django settings found")
    assert str(tmp_path) in done.stderr
    assert not list(tmp_path.iterdir()), "nothing may be written when no settings are found"


def test_settings_module_that_cannot_be_imported_is_one_line(tmp_path: Path) -> None:
    for args, env in (
        (("status", "--settings", "nope.settings"), subprocess_env(settings=None)),
        (("run", "--burst"), subprocess_env(settings="tests.nope_settings")),
    ):
        done = run_cli(*args, cwd=tmp_path, env=env)
        assert_one_line_error(done.stderr, done.returncode, "Cannot import the settings module")


def test_unknown_queue_in_a_fresh_process_is_one_line(tmp_path: Path) -> None:
    done = run_cli("run", "--burst", "-q", "nope", cwd=tmp_path, env=subprocess_env(tmp_path))
    assert_one_line_error(done.stderr, done.returncode, "Unknown queue 'nope'")


def test_unknown_log_level_is_one_line(runner: CliRunner, backend) -> None:
    result = invoke(runner, "run", "--burst", "--log-level", "chatty")
    assert_one_line_error(result.stderr, result.exit_code, "'chatty'")


@pytest.mark.parametrize("command", ["run", "status"])
@pytest.mark.parametrize("problem", ["missing folder", "not a database"])
def test_queue_file_that_cannot_be_opened_is_one_line(
    tmp_path: Path, command: str, problem: str
) -> None:
    write_project(tmp_path)
    if problem == "missing folder":
        path, expected = tmp_path / "missing" / "tasks.sqlite3", "does not exist"
    else:
        path, expected = tmp_path / "junk.sqlite3", "is not a SQLite database"
        path.write_text("this is not a database, just text long enough to have a header")
    settings = tmp_path / "proj" / "settings.py"
    settings.write_text(
        settings.read_text().replace('"QUEUES"', f'"OPTIONS": {{"path": {str(path)!r}}}, "QUEUES"')
    )
    args = ("run", "--burst", "--processes", "1") if command == "run" else ("status",)
    done = run_cli(*args, cwd=tmp_path, env=subprocess_env(settings=None))
    lines = [line for line in done.stderr.splitlines() if "litetasks: error:" in line]
    assert len(lines) == 1, done.stderr
    assert_one_line_error(lines[0], done.returncode, expected)
    assert "Traceback" not in done.stderr, done.stderr


# -- finding the settings ----------------------------------------------------------------------


def test_settings_are_found_from_manage_py_in_the_current_folder(tmp_path: Path) -> None:
    queue_file = write_project(tmp_path)
    done = run_cli("status", "--json", cwd=tmp_path, env=subprocess_env(settings=None))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    # The default queue file sits beside the SQLite default database.
    assert Path(data["path"]) == queue_file
    assert queue_file.is_file()
    assert set(data["queues"]) == {"default", "mail"}


def test_environment_settings_win_over_manage_py(tmp_path: Path) -> None:
    write_project(tmp_path)
    done = run_cli(
        "status", "--json", cwd=tmp_path, env=subprocess_env(tmp_path, settings="tests.settings")
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["queues"]) == {"default", "emails", "reports"}


def test_settings_option_wins_over_the_environment(tmp_path: Path) -> None:
    write_project(tmp_path, "other")
    done = run_cli(
        "status",
        "--json",
        "--settings",
        "other.settings",
        cwd=tmp_path,
        env=subprocess_env(tmp_path, settings="tests.settings"),
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["queues"]) == {"default", "mail"}


def test_pythonpath_makes_a_project_elsewhere_importable(tmp_path: Path) -> None:
    src = tmp_path / "src"
    queue_file = write_project(src, manage_py=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = subprocess_env(settings=None)
    done = run_cli("status", "--json", "--settings", "proj.settings", cwd=elsewhere, env=env)
    assert_one_line_error(done.stderr, done.returncode, "Cannot import the settings module")
    done = run_cli(
        "status",
        "--json",
        "--settings",
        "proj.settings",
        "--pythonpath",
        str(src),
        cwd=elsewhere,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert Path(json.loads(done.stdout)["path"]) == queue_file


def test_pythonpath_wins_over_the_current_folder(tmp_path: Path) -> None:
    """As with ``manage.py --pythonpath``: the folder named explicitly is searched first."""
    src = tmp_path / "src"
    write_project(src, manage_py=False, marker="-from-pythonpath")
    write_project(tmp_path, manage_py=False, marker="-from-cwd")
    done = run_cli(
        "status",
        "--json",
        "--settings",
        "proj.settings",
        "--pythonpath",
        str(src),
        cwd=tmp_path,
        env=subprocess_env(settings=None),
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["queues"]) == {"default", "mail-from-pythonpath"}


# -- python manage.py litetasks ----------------------------------------------------------------


def test_management_command_prints_status(tmp_path: Path) -> None:
    queue_file = write_project(tmp_path)
    done = manage(tmp_path, "status", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert Path(data["path"]) == queue_file
    assert data["queues"]["default"] == {state.value: 0 for state in JobState}
    table = manage(tmp_path, "status")
    assert table.returncode == 0, table.stderr
    assert "SUCCESSFUL" in table.stdout


def test_management_command_help_and_errors(tmp_path: Path) -> None:
    write_project(tmp_path)
    done = manage(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert "status" in done.stdout
    done = manage(tmp_path, "status", "--backend", "nope")
    assert_one_line_error(done.stderr, done.returncode, "No task backend 'nope'")


def test_manage_py_help_litetasks_shows_the_commands(tmp_path: Path) -> None:
    write_project(tmp_path)
    done = run_cli(
        cwd=tmp_path,
        env=subprocess_env(settings=None, pythonpath=()),
        argv=[sys.executable, "manage.py", "help", "litetasks"],
    )
    assert done.returncode == 0, done.stderr
    for command in ("run", "status"):
        assert re.search(rf"\b{command}\b", done.stdout), done.stdout


def test_call_command_prints_status_and_returns(
    backend, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks.add.enqueue(1, 2)
    call_command("litetasks", "status", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["queues"]["default"]["READY"] == 1


def test_call_command_turns_an_error_into_command_error(
    backend, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("litetasks", "status", "--backend", "nope")
    assert raised.value.returncode != 0
    assert "No task backend 'nope'" in capsys.readouterr().err


def test_management_command_runs_a_burst(tmp_path: Path) -> None:
    write_project(tmp_path)
    done = manage(tmp_path, "run", "--burst", "--processes", "1", "--threads", "1")
    assert done.returncode == 0, done.stderr


# -- retry, cancel, prune ----------------------------------------------------------------------


def test_retry_reruns_failed_tasks_by_id(runner: CliRunner, backend) -> None:
    failed = tasks.fail_value_error.enqueue()
    done = tasks.noop.enqueue()
    drain()

    result = invoke(runner, "retry", failed.id, done.id)

    # One rule: exit 1 when any task named is not retried (here one is SUCCESSFUL).
    assert result.exit_code == 1, result.output
    assert f"{failed.id}: retried" in result.stdout
    assert f"{done.id}: not failed" in result.stdout
    assert "1 of 2 task(s) retried." in result.stdout
    assert backend.get_result(failed.id).status == "READY"
    assert backend.get_result(done.id).status == "SUCCESSFUL"
    drain()
    again = invoke(runner, "retry", failed.id)
    assert (again.exit_code, again.stdout.splitlines()[-1]) == (0, "1 of 1 task(s) retried.")


def test_retry_help_states_its_exit_codes(runner: CliRunner) -> None:
    text = ANSI.sub("", invoke(runner, "retry", "--help").stdout)
    assert "Exits 0 when every task named is retried, 1 when any is not" in " ".join(text.split())


def test_retry_failed_reruns_every_failed_task_of_a_queue(runner: CliRunner, backend) -> None:
    mail = [tasks.fail_value_error.using(queue_name="emails").enqueue() for _ in range(2)]
    report = tasks.fail_value_error.using(queue_name="reports").enqueue()
    drain()

    result = invoke(runner, "retry", "--failed", "--queue", "emails")

    assert result.exit_code == 0, result.output
    assert "2 of 2 task(s) retried." in result.stdout
    assert [backend.get_result(r.id).status for r in mail] == ["READY", "READY"]
    assert backend.get_result(report.id).status == "FAILED"
    assert invoke(runner, "retry", "--failed", "--queue", "emails").stdout.strip() == (
        "No FAILED tasks."
    )


def test_retry_of_an_unknown_id_exits_1(runner: CliRunner, backend) -> None:
    result = invoke(runner, "retry", "0" * 32)
    assert result.exit_code == 1
    assert "not found" in result.stdout


def test_retry_needs_ids_or_failed(runner: CliRunner, backend) -> None:
    result = invoke(runner, "retry")
    assert result.exit_code == 2
    assert "Give task ids or --failed" in result.stderr


def test_cancel_fails_a_ready_task_that_then_never_runs(runner: CliRunner, backend) -> None:
    result_ = tasks.noop.enqueue()

    result = invoke(runner, "cancel", result_.id, "f" * 32)

    assert result.exit_code == 1  # one id was unknown
    assert f"{result_.id}: cancelled" in result.stdout
    assert f"{'f' * 32}: not found" in result.stdout
    assert drain() == 0
    stored = backend.get_result(result_.id)
    assert stored.status == "FAILED"
    assert stored.errors[0].exception_class_path == "litetasks.exceptions.TaskCancelled"


def test_prune_deletes_finished_results_older_than_asked(runner: CliRunner, backend) -> None:
    old = [tasks.noop.enqueue() for _ in range(3)]
    failed = tasks.fail_value_error.enqueue()
    drain()
    waiting = tasks.noop.enqueue()

    kept = invoke(runner, "prune", "--older-than", "1h")
    assert kept.exit_code == 0, kept.output
    assert "Deleted 0 " in kept.stdout

    import time

    time.sleep(0.01)
    result = invoke(runner, "prune", "--older-than", "0s", "--status", "successful")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Deleted 3 SUCCESSFUL result(s) that finished more than 0 seconds ago.\n"
    )
    assert backend.get_result(failed.id).status == "FAILED"
    assert backend.get_result(waiting.id).status == "READY"
    del old


@pytest.mark.parametrize(
    ("older_than", "expected"),
    [
        ("7d", "7 days"),
        ("1d", "1 day"),
        ("36h", "36 hours"),
        ("90m", "90 minutes"),
        ("2w", "14 days"),
        ("45", "45 seconds"),
        ("1s", "1 second"),
        ("1.5s", "1.5 seconds"),
    ],
)
def test_prune_says_the_age_in_words(
    runner: CliRunner, backend, older_than: str, expected: str
) -> None:
    result = invoke(runner, "prune", "--older-than", older_than)
    assert result.stdout == (
        f"Deleted 0 SUCCESSFUL and FAILED result(s) that finished more than {expected} ago.\n"
    )


def test_prune_help_names_the_default_age(runner: CliRunner) -> None:
    text = " ".join(ANSI.sub("", invoke(runner, "prune", "--help").stdout).split())
    assert "7d or 2w (default: OPTIONS results_ttl)" in text
    assert " ." not in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--older-than", "soon"], "Cannot read the duration 'soon'"),
        (["--older-than", "1d", "--status", "READY"], "--status READY cannot be pruned"),
    ],
)
def test_prune_refuses_bad_arguments_in_one_line(
    runner: CliRunner, backend, args: list[str], expected: str
) -> None:
    result = invoke(runner, "prune", *args)
    assert result.exit_code == 2
    assert expected in result.stderr
