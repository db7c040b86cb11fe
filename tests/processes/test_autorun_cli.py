"""``OPTIONS["autorun"] = True`` never starts a second, in-process pool inside litetasks' own
commands: ``litetasks run`` forks its workers, and a thread alive across fork is unsafe."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from litetasks._django.backend import new_job_id
from litetasks._store.records import NewJob
from tests import tasks
from tests.harness import REPO, run_cli, subprocess_env, wait_for
from tests.runtime.test_autorun import Project, free_port, project, report

__all__ = ["project"]  # the fixture, shared with tests/runtime/test_autorun.py

BACKEND = "litetasks.backend.SQLiteBackend"

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


# -- runserver: what its console shows, and running tasks at a reload or Ctrl-C ----------------

FAILING_PY = """
try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task


@task
def boom():
    raise ValueError("card declined")
"""


def test_runserver_console_shows_tasks_running_and_failing(project: Project) -> None:
    (project.root / "jobs" / "failing.py").write_text(FAILING_PY)
    server = project.start(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{free_port()}"]
    )
    started = server.wait_for_line("litetasks: running tasks in this process", timeout_s=15)
    assert "get 5 s to finish at a reload or Ctrl-C" in started
    ok = project.enqueue("answer")
    failing = new_job_id()
    project.store.enqueue([NewJob(job_id=failing, task_path="jobs.failing.boom", args_json="[]")])
    project.result(ok)

    done = server.wait_for_line(f"id={ok} path=jobs.tasks.answer state=SUCCESSFUL", timeout_s=15)
    failed = server.wait_for_line(f"id={failing} path=jobs.failing.boom state=FAILED", timeout_s=15)
    server.wait_for_line("ValueError: card declined", timeout_s=5)
    # Once each.
    assert server.output.count(done) == 1 and server.output.count(failed) == 1, server.output
    server.wait_for_line("Quit the server with", timeout_s=15)  # Ctrl-C in checks: exit -2
    project.ctrl_c(server)


def test_a_task_running_at_a_reload_finishes_with_the_old_code(project: Project) -> None:
    server = project.start([sys.executable, "manage.py", "runserver", f"127.0.0.1:{free_port()}"])
    first = project.new_worker([])
    server.wait_for_line("Quit the server with", timeout_s=15)  # about when the first scan ends
    marker = project.root / "slow.started"
    slow = project.enqueue("slow", str(marker), 1.5)
    wait_for(marker.exists, timeout_s=15, what="the slow task to start")

    changed = time.monotonic()
    project.edit_until_reloaded(2, first)
    report("task module edited while a 1.5 s task runs -> new pool", time.monotonic() - changed)

    job = project.result(slow)
    # Finished by the old pool, with the old code, once; not put back and run again.
    assert (job.return_json, job.attempts, job.errors) == ("1", 1, ())
    assert marker.read_text() == "started\n"
    assert project.result(project.enqueue("answer")).return_json == "2"
    project.ctrl_c(server)


def test_autorun_grace_is_an_option(tmp_path: Path) -> None:
    from django.test import override_settings

    from litetasks._django.compat import InvalidTaskBackend, task_backends
    from litetasks.exceptions import ConfigurationError

    options = {"path": str(tmp_path / "q.sqlite3"), "autorun_grace_s": 2}
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "OPTIONS": options}}):
        assert task_backends["default"].config.autorun_grace_s == 2.0
    options["autorun_grace_s"] = 600
    with (
        override_settings(TASKS={"default": {"BACKEND": BACKEND, "OPTIONS": options}}),
        pytest.raises(
            (ConfigurationError, InvalidTaskBackend),
            match="must be a number of seconds from 0 to 60",
        ),
    ):
        _ = task_backends["default"].config  # bad OPTIONS are refused at first use


def test_ctrl_c_while_runserver_reloads_exits_0_and_leaves_nothing(project: Project) -> None:
    server = project.start([sys.executable, "manage.py", "runserver", f"127.0.0.1:{free_port()}"])
    first = project.new_worker([])
    server.wait_for_line("Quit the server with", timeout_s=15)
    # The old serving process is gone (or going): Ctrl-C lands while the next one starts. An
    # edit made before the autoreloader's first scan is taken for the original: edit again.
    deadline = time.monotonic() + 20
    while True:
        project.set_value(2)
        try:
            wait_for(lambda: first not in project.worker_pids(), timeout_s=2, what="a reload")
            break
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
    project.ctrl_c(server)  # exit code 0, no process left, no live worker
