"""The command line as a Django developer expects it: Django's standard options on
``manage.py litetasks``, ``--version``, help and tables readable at 80 columns, and every
environment variable litetasks reads documented."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from django.test import override_settings
from typer.testing import CliRunner

import litetasks
from litetasks._cli.django_options import split_django_options
from litetasks.cli import app
from tests import tasks
from tests.harness import (
    REPO,
    invoke,
    manage,
    run_cli,
    subprocess_env,
    worker_of_this_process,
    write_project,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# -- help and tables at 80 columns -----------------------------------------------------------


def _commands() -> dict[str, Any]:
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_at_80_columns_shows_every_option_whole(runner: CliRunner, name: str) -> None:
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "80"}, prog_name="litetasks")
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.stdout)
    assert "…" not in text and "<bool>" not in text, text
    # An option says what it takes in words (--settings MODULE), never as a Python type; an
    # argument's line may name its type after its name (NAME <str>).
    options = [line for line in text.splitlines() if line.lstrip().startswith("-")]
    assert not [line for line in options if "<str>" in line or "<int" in line], text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for param in _commands()[name].params:
        for option in [*param.opts, *param.secondary_opts]:
            if option.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (option, text)


def test_h_is_help_as_in_djangos_commands(runner: CliRunner) -> None:
    assert invoke(runner, "run", "-h").stdout == invoke(runner, "run", "--help").stdout
    assert "Usage: litetasks run [OPTIONS]" in invoke(runner, "run", "-h").stdout


def test_command_list_at_80_columns_cuts_no_description(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "80"}, prog_name="litetasks")
    text = result.stdout.split("Commands:")[1]
    assert "..." not in text and "…" not in text, text
    for name in _commands():
        assert re.search(rf"^  {name} ", text, re.MULTILINE), text


def test_status_tables_at_80_columns_cut_nothing(runner: CliRunner, queue_path: Path) -> None:
    queue = "transactional-emails-eu-west"
    periodic = {
        "nightly-digest-for-every-customer": {
            "task": "tests.tasks.noop",
            "cron": "0 6 * * *",
            "timezone": "Europe/Amsterdam",
        }
    }
    setting = {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "QUEUES": ["default", queue],
            "OPTIONS": {"path": str(queue_path), "periodic": periodic},
        }
    }
    with override_settings(TASKS=setting):
        from litetasks._django.compat import task_backends

        backend = task_backends["default"]
        backend.store.register_worker(worker_of_this_process("w1", queues=("default", queue)))
        for _ in range(2):
            tasks.noop.using(queue_name=queue).enqueue()
        running = [job.job_id for _ in range(2) for job in backend.store.claim("w1")]

        narrow = runner.invoke(app, ["status"], env={"COLUMNS": "80"}).stdout
        wide = runner.invoke(app, ["status"], env={"COLUMNS": "250"}).stdout

    assert "…" not in narrow, narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80, narrow
    columns = _columns(narrow)
    for whole in [queue, *running, "nightly-digest-for-every-customer", "tests.tasks.noop"]:
        assert whole in wide, wide
        # Narrow: wrapped over the lines of its column, never cut.
        assert any(whole in column for column in columns), (whole, narrow)


def _columns(text: str) -> list[str]:
    """The text of each column of each table in ``text``, its lines' pieces joined."""
    columns: dict[tuple[int, int], str] = {}
    table = 0
    for line in text.splitlines():
        if not line.startswith("│"):
            table += line.startswith("┏")
            continue
        for index, piece in enumerate(line.strip("│").split("│")):
            columns[table, index] = columns.get((table, index), "") + piece.strip()
    return list(columns.values())


# -- --version -----------------------------------------------------------------------------------


def test_version(runner: CliRunner) -> None:
    result = invoke(runner, "--version")
    assert (result.exit_code, result.stdout) == (0, f"litetasks {litetasks.__version__}\n")


def test_version_of_the_console_script(tmp_path: Path) -> None:
    done = run_cli("--version", cwd=tmp_path, env=subprocess_env(settings=None))
    assert (done.returncode, done.stdout.strip()) == (0, f"litetasks {litetasks.__version__}")


# -- Django's standard options on manage.py litetasks --------------------------------------------


@pytest.mark.parametrize(
    ("args", "rest", "found"),
    [
        (["status"], ["status"], {}),
        (["--no-color", "status", "--json"], ["status", "--json"], {"--no-color": ""}),
        (["status", "-v", "2"], ["status"], {"--verbosity": "2"}),
        (["-v2", "status"], ["status"], {"--verbosity": "2"}),
        (["run", "--verbosity=0", "--burst"], ["run", "--burst"], {"--verbosity": "0"}),
        (
            ["--settings", "proj.settings", "--pythonpath=.", "--traceback", "status"],
            ["status"],
            {"--settings": "proj.settings", "--pythonpath": ".", "--traceback": ""},
        ),
        (["cancel", "--", "-v"], ["cancel", "--", "-v"], {}),
    ],
)
def test_split_django_options(args: list[str], rest: list[str], found: dict[str, str]) -> None:
    assert split_django_options(args) == (rest, found)


def test_management_command_accepts_djangos_standard_options(tmp_path: Path) -> None:
    write_project(tmp_path)
    for args in (
        ["--no-color", "status"],
        ["status", "--no-color", "-v", "2", "--traceback"],
        ["--settings", "proj.settings", "--pythonpath", ".", "status", "--force-color"],
        ["--verbosity", "0", "run", "--burst", "--processes", "1", "--threads", "1"],
        ["--skip-checks", "status"],
    ):
        done = manage(tmp_path, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "No such option" not in done.stderr


def test_verbosity_sets_the_log_level_of_run(tmp_path: Path) -> None:
    write_project(tmp_path)
    quiet = manage(tmp_path, "run", "--burst", "--processes", "1", "-v", "0")
    normal = manage(tmp_path, "run", "--burst", "--processes", "1")
    assert quiet.returncode == normal.returncode == 0, quiet.stderr + normal.stderr
    assert "Starting supervisor" in normal.stderr
    assert "Starting supervisor" not in quiet.stderr
    done = manage(tmp_path, "run", "--burst", "-v", "5")
    assert done.returncode == 2
    assert done.stderr == "litetasks: error: -v/--verbosity must be 0, 1, 2 or 3 (got '5').\n"


def test_traceback_option_prints_the_traceback_of_an_error(tmp_path: Path) -> None:
    write_project(tmp_path)
    plain = manage(tmp_path, "status", "--backend", "nope")
    traced = manage(tmp_path, "--traceback", "status", "--backend", "nope")
    assert plain.returncode == traced.returncode == 2
    assert "Traceback" not in plain.stderr
    assert "Traceback (most recent call last)" in traced.stderr
    assert traced.stderr.splitlines()[-1] == plain.stderr.strip()


# -- environment variables -----------------------------------------------------------------------


def test_every_environment_variable_litetasks_reads_is_documented() -> None:
    names = set()
    for path in (REPO / "litetasks").rglob("*.py"):
        source = path.read_text()
        names.update(re.findall(r"""["'](LITETASKS_[A-Z_]+|DJANGO_SETTINGS_MODULE)["']""", source))
    assert {"LITETASKS_THREADS", "LITETASKS_PROCESSES", "LITETASKS_FAULTS"} <= names
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Command line") : readme.index("## Guarantees")]
    assert [name for name in sorted(names) if f"`{name}`" not in section] == []


def test_help_of_the_management_command_at_80_columns(tmp_path: Path) -> None:
    write_project(tmp_path)
    env = {**subprocess_env(settings=None, pythonpath=()), "COLUMNS": "80"}
    done = run_cli(
        cwd=tmp_path, env=env, argv=[sys.executable, "manage.py", "litetasks", "run", "--help"]
    )
    assert done.returncode == 0, done.stderr
    assert "--max-tasks-per-child" in done.stdout and "<bool>" not in done.stdout
