"""What ``litetasks run`` prints: one line per event, at ``--log-level``, and a project's own
``LOGGING`` left as it is. Each test runs the real console script in a scratch project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from litetasks._django.compat import FRAMEWORK
from tests.cli.scratch import SHOP_TASKS, burst, enqueue, lines_about, shop

pytestmark = pytest.mark.slow

# A project's LOGGING: everything at WARNING and above into a file, Django's loggers too.
USER_LOGGING = """
LOGGING = {{
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {{"mine": {{"format": "MINE %(levelname)s %(name)s %(message)s"}}}},
    "handlers": {{
        "file": {{"class": "logging.FileHandler", "filename": {path!r}, "formatter": "mine"}}
    }},
    "root": {{"handlers": ["file"], "level": "WARNING"}},
    "loggers": {{"django": {{"level": "WARNING"}}}},
}}
"""


def test_debug_project_prints_each_task_line_once(tmp_path: Path) -> None:
    store, _ = shop(tmp_path)
    ok, broken = enqueue(store, "ok"), enqueue(store, "broken")

    output = burst(tmp_path)

    assert len(lines_about(output, ok, "state=SUCCESSFUL")) == 1, output
    assert len(lines_about(output, broken, "state=FAILED")) == 1, output
    [line] = lines_about(output, ok, "state=SUCCESSFUL")
    assert re.match(rf"\d{{4}}-\d\d-\d\d [\d:,]+ INFO {re.escape(FRAMEWORK)}: Task id=", line)
    assert output.count("ValueError: out of stock") == 1, output  # one traceback


def test_log_level_reaches_djangos_task_lines(tmp_path: Path) -> None:
    store, _ = shop(tmp_path)
    ok, broken = enqueue(store, "ok"), enqueue(store, "broken")

    output = burst(tmp_path, "--log-level", "WARNING")

    assert lines_about(output, ok, "state=") == [], output
    assert len(lines_about(output, broken, "state=FAILED")) == 1, output


def test_log_level_debug_shows_djangos_debug_lines(tmp_path: Path) -> None:
    store, _ = shop(tmp_path)
    ok = enqueue(store, "ok")
    # A task that enqueues logs Django's DEBUG "enqueued" line in the worker.
    (tmp_path / "shop" / "tasks.py").write_text(
        SHOP_TASKS + "\n\n@task\ndef chain():\n    ok.enqueue()\n"
    )
    chain = enqueue(store, "chain")

    output = burst(tmp_path, "--log-level", "DEBUG")

    assert len(lines_about(output, chain, "state=SUCCESSFUL")) == 1, output
    assert re.search(
        rf"DEBUG {re.escape(FRAMEWORK)}: Task id=\w+ path=shop.tasks.ok enqueued", output
    )
    del ok


def test_a_projects_logging_is_left_as_it_is(tmp_path: Path) -> None:
    log = tmp_path / "project.log"
    store, _ = shop(tmp_path, USER_LOGGING.format(path=str(log)))
    ok, broken = enqueue(store, "ok"), enqueue(store, "broken")

    output = burst(tmp_path)

    # Nothing printed by a handler of litetasks; the project's file got what its levels let in.
    assert lines_about(output, ok, "state=") == [] and "out of stock" not in output, output
    written = log.read_text()
    assert lines_about(written, ok, "state=") == []
    assert len(lines_about(written, broken, "state=FAILED")) == 1, written
    assert lines_about(written, broken, "state=FAILED")[0].startswith("MINE ERROR ")


def test_log_level_given_with_a_projects_logging_sets_the_task_loggers_level(
    tmp_path: Path,
) -> None:
    log = tmp_path / "project.log"
    store, _ = shop(tmp_path, USER_LOGGING.format(path=str(log)))
    ok = enqueue(store, "ok")

    output = burst(tmp_path, "--log-level", "INFO")

    assert lines_about(output, ok, "state=") == [], output
    written = log.read_text()
    assert len(lines_about(written, ok, "state=SUCCESSFUL")) == 1, written
