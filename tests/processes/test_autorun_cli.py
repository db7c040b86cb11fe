"""``OPTIONS["autorun"] = True`` never starts a second, in-process pool inside litetasks' own
commands: ``litetasks run`` forks its workers, and a thread alive across fork is unsafe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import tasks
from tests.harness import REPO, run_cli, subprocess_env

pytestmark = pytest.mark.slow

SETTINGS = """
from tests.settings import *  # noqa: F403
TASKS["default"]["OPTIONS"]["autorun"] = True  # noqa: F405
"""


def test_run_with_autorun_on_uses_only_its_own_workers(backend: Any, tmp_path: Path) -> None:
    (tmp_path / "autorun_settings.py").write_text(SETTINGS)
    results = [tasks.add.enqueue(i, 1) for i in range(5)]
    env = subprocess_env(tmp_path, settings="autorun_settings", pythonpath=(REPO, tmp_path))
    done = run_cli("run", "--burst", "--processes", "1", "--threads", "1", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "running tasks in this process" not in done.stderr
    ran_by = set()
    for result in results:
        result.refresh()
        assert result.return_value == result.args[0] + 1
        ran_by.update(result.worker_ids)
    # One forked worker ran them all; an autorun pool in the supervisor would show as another.
    assert len(ran_by) == 1, ran_by


def test_autorun_on_never_starts_a_pool_under_a_test_runner() -> None:
    from litetasks._runtime.autorun import should_autorun

    gunicorn = ["/venv/bin/gunicorn", "proj.wsgi"]
    assert should_autorun(gunicorn, {}, debug=False, option=True) is True
    assert should_autorun(gunicorn, {}, debug=False, option=True, under_test=True) is False
