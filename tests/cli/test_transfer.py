"""``litetasks export`` / ``import``: READY tasks as versioned JSON Lines, imported exactly."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import apsw
import pytest
from django.test import override_settings
from django.utils import timezone
from typer.testing import CliRunner

from litetasks._cli.commands import app
from litetasks.testing import drain
from tests import feature_tasks, tasks
from tests.corruption import corrupt, raw_row
from tests.harness import invoke

COLUMNS = (
    "job_id, task_path, queue_name, priority, args, kwargs, state, enqueued_at, run_after, "
    "due_at, started_at, last_attempted_at, worker_ids, errors, attempts, max_attempts, budget, "
    "unique_key, hooks"
)


JSON_COLUMNS = {"args", "kwargs", "worker_ids", "errors", "hooks"}


def rows(path: Path) -> list[dict[str, object]]:
    """The READY rows, their JSON columns as values (the text's spacing is not the task's)."""
    names = COLUMNS.split(", ")
    with apsw.Connection(str(path)) as db:
        found = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE state = 'READY' ORDER BY seq")
        return [
            {
                name: json.loads(value) if name in JSON_COLUMNS and value is not None else value
                for name, value in zip(names, row, strict=True)
            }
            for row in found
        ]


def enqueue_every_kind(folder: Path) -> None:
    # Fails once: READY again, waiting for its retry, with one attempt and its error.
    feature_tasks.slow_retry.using(queue_name="reports").enqueue(str(folder))
    assert drain(queues=["reports"]) == 1
    tasks.add.enqueue(1, 2)
    tasks.echo.using(
        priority=7, queue_name="emails", run_after=timezone.now() + timedelta(hours=2)
    ).enqueue("x", n={"deep": [1, 2.5, None]})
    feature_tasks.unique_by_arguments.enqueue(4, b=5)
    feature_tasks.with_success_hook.enqueue(3)


def test_export_then_import_into_a_new_queue_file_is_exact(
    backend, queue_path: Path, tmp_path: Path
):
    (tmp_path / "marks").mkdir()
    enqueue_every_kind(tmp_path / "marks")
    before = rows(queue_path)
    assert any(row["attempts"] == 1 for row in before)  # the retry-waiting task, 1 attempt
    assert any(row["hooks"] for row in before) and any(row["unique_key"] for row in before)
    runner, export = CliRunner(), tmp_path / "tasks.jsonl"

    assert invoke(runner, "export", str(export)).exit_code == 0
    other = tmp_path / "other.sqlite3"
    imported = _import_into(runner, export, other)

    assert "5 task(s) imported, 0 skipped" in imported
    assert rows(other) == before
    header = json.loads(export.read_text().splitlines()[0])
    assert header == {"format": "litetasks-tasks", "version": 1}


def _import_into(runner: CliRunner, export: Path, path: Path) -> str:
    tasks_setting = {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "QUEUES": ["default", "emails", "reports"],
            "OPTIONS": {"path": str(path)},
        }
    }
    with override_settings(TASKS=tasks_setting):
        result = invoke(runner, "import", str(export))
    assert result.exit_code == 0, result.output
    return result.output


def test_importing_twice_adds_nothing_twice(backend, queue_path: Path, tmp_path: Path):
    tasks.add.enqueue(1, 2)
    runner, export = CliRunner(), tmp_path / "tasks.jsonl"
    invoke(runner, "export", str(export))

    assert "0 task(s) imported, 1 skipped" in _import_into(runner, export, queue_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": "other"}\n', "is not a litetasks export"),
        ('{"format": "litetasks-tasks", "version": 9}\n', "of version 9; this litetasks reads"),
        (
            '{"format": "litetasks-tasks", "version": 1}\n{"id": 1}\n',
            "line 2 is not a task litetasks export writes",
        ),
    ],
)
def test_a_bad_export_is_refused_naming_the_line_and_nothing_is_imported(
    backend, queue_path: Path, tmp_path: Path, content: str, message: str
):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    result = CliRunner().invoke(app, ["import", str(bad)], prog_name="litetasks")

    assert result.exit_code == 2
    assert message in result.stderr
    assert not queue_path.exists() or rows(queue_path) == []


def test_export_refuses_a_row_it_cannot_read_by_name_and_writes_the_others(
    backend, queue_path: Path, tmp_path: Path
):
    tasks.add.enqueue(1, 2)
    bad = tasks.add.enqueue(3, 4)
    tasks.add.enqueue(5, 6)
    seq = corrupt(queue_path, bad.id, "args", "CAST(x'5bff5d' AS TEXT)")
    before = raw_row(queue_path, seq)
    export = tmp_path / "tasks.jsonl"

    result = CliRunner().invoke(app, ["export", str(export)], prog_name="litetasks")

    assert result.exit_code == 1
    assert (
        f"litetasks: refused {bad.id} (tests.tasks.add): its row holds values litetasks did not "
        "write and cannot read: column 'args' holds b'[\\xff]' (blob), not text."
    ) in result.stderr
    assert f"2 task(s) exported to {str(export)!r}, 1 refused; they stay READY here" in (
        result.stderr
    )
    exported = [json.loads(line) for line in export.read_text().splitlines()[1:]]
    assert [task["args"] for task in exported] == [[1, 2], [5, 6]]
    assert raw_row(queue_path, seq) == before


# A task line whose id holds a byte that is not UTF-8, or (escaped in JSON) a lone surrogate,
# which no queue file can store: before, a traceback, with the line unnamed.
@pytest.mark.parametrize(
    ("id_start", "message"),
    [
        (b"\xff", "line 2 is not UTF-8 (byte 0xff at position 8)"),
        (b"\\udcff", "line 2 is not a task litetasks export writes"),
    ],
)
def test_an_export_holding_text_that_is_not_utf8_is_refused_naming_the_line(
    backend, queue_path: Path, tmp_path: Path, id_start: bytes, message: str
):
    tasks.add.enqueue(1, 2)
    export = tmp_path / "tasks.jsonl"
    assert CliRunner().invoke(app, ["export", str(export)]).exit_code == 0
    header, good = export.read_bytes().splitlines()
    assert good.startswith(b'{"id": "')
    bad = good.replace(b'{"id": "', b'{"id": "' + id_start, 1)
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"\n".join([header, bad, good.replace(b'"args": [1', b'"args": [7')]))

    result = CliRunner().invoke(app, ["import", str(source)], prog_name="litetasks")

    assert result.exit_code == 2, result.output
    assert f"litetasks: error: {source}, {message}" in result.stderr
    assert "nothing was imported" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert [row["args"] for row in rows(queue_path)] == [[1, 2]]
