"""Tasks inside ``runserver`` (autorun) and ``litetasks run --reload``.

``should_autorun`` is a pure function, tested as a table. The rest runs a real ``manage.py
runserver`` (and ``litetasks run --reload``) on a tiny project written to ``tmp_path``, enqueues
through ``litetasks._store.store.Store`` on the same queue file, and edits the project's task
module to check that a reload runs the new code.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from litetasks._runtime.autorun import should_autorun
from litetasks._store.enqueueing import new_job_id
from litetasks._store.records import JobRecord, JobState, NewJob
from litetasks._store.store import Store
from tests.harness import ProcessGroup, Started, is_alive, litetasks_argv, subprocess_env, wait_for

RUN_MAIN = {"RUN_MAIN": "true"}  # set by Django's autoreloader in the serving child

# (argv, environ, DEBUG, OPTIONS["autorun"]) -> whether this process runs a pool.
CASES = [
    # runserver: the serving child only, never the autoreloader's parent.
    (["manage.py", "runserver"], {}, True, None, False),
    (["manage.py", "runserver"], RUN_MAIN, True, None, True),
    (["manage.py", "runserver", "0.0.0.0:8000"], RUN_MAIN, True, None, True),
    (["/srv/app/manage.py", "runserver"], RUN_MAIN, True, None, True),
    (["/venv/bin/django-admin", "runserver"], RUN_MAIN, True, None, True),
    (
        ["/venv/lib/python3.12/site-packages/django/__main__.py", "runserver"],
        RUN_MAIN,
        True,
        None,
        True,
    ),
    (["manage.py", "runserver"], {}, True, True, False),
    # --noreload: one process, which serves.
    (["manage.py", "runserver", "--noreload"], {}, True, None, True),
    (["manage.py", "runserver", "--noreload"], {}, False, None, False),
    (["manage.py", "runserver", "--noreload"], {}, False, True, True),
    # DEBUG off needs the option on; the option off always wins.
    (["manage.py", "runserver"], RUN_MAIN, False, None, False),
    (["manage.py", "runserver"], RUN_MAIN, False, True, True),
    (["manage.py", "runserver"], RUN_MAIN, True, False, False),
    (["manage.py", "runserver", "--noreload"], {}, True, False, False),
    # Other management commands: never, whatever DEBUG and the option say.
    *[
        (["manage.py", command], env, debug, option, False)
        for command in ("migrate", "shell", "test", "check", "litetasks", "")
        for env in ({}, RUN_MAIN)
        for debug in (True, False)
        for option in (None, True)
    ],
    (["manage.py"], {}, True, True, False),
    # A production server (anything that is not manage.py): only when opted in.
    (["/venv/bin/gunicorn", "proj.wsgi"], {}, True, None, False),
    (["/venv/bin/gunicorn", "proj.wsgi"], {}, False, None, False),
    (["/venv/bin/gunicorn", "proj.wsgi"], {}, False, True, True),
    (["/venv/bin/gunicorn", "proj.wsgi"], {}, True, False, False),
    (["uwsgi", "--module", "proj.wsgi"], {}, False, True, True),
    (["/venv/bin/litetasks", "run"], {}, True, None, False),
]


@pytest.mark.parametrize(("argv", "environ", "debug", "option", "expected"), CASES)
def test_should_autorun(
    argv: list[str], environ: dict[str, str], debug: bool, option: bool | None, expected: bool
) -> None:
    assert should_autorun(argv, environ, debug=debug, option=option) is expected


# -- a real project --------------------------------------------------------------------------------

TASKS_PY = '''\
"""The project's tasks; the tests rewrite VALUE to check that a reload runs the new code."""

import time
from pathlib import Path

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task

VALUE = {value}


@task
def answer():
    return VALUE


@task
def slow(marker, seconds):
    with open(marker, "a") as file:  # a line per start
        file.write("started\\n")
    time.sleep(seconds)
    return VALUE
'''

SETTINGS_PY = """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "litetasks-autorun-tests"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1"]
USE_TZ = True
INSTALLED_APPS = ["litetasks", "jobs"]
ROOT_URLCONF = "proj.urls"
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
}}
TASKS = {{"default": {{"BACKEND": "litetasks.backend.SQLiteBackend", "OPTIONS": {options}}}}}
"""

MANAGE_PY = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

# Importing the tasks in ready() puts the module in sys.modules before the autoreloader's first
# scan, so an edit made once the server is up is always seen as a change.
APPS_PY = """\
from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self):
        from . import tasks  # noqa: F401
"""


class Project:
    """A Django project in ``root`` with one app, ``jobs``, and a queue file beside it."""

    def __init__(self, root: Path, procs: ProcessGroup) -> None:
        self.root = root
        self.procs = procs
        self.queue = root / "tasks.sqlite3"
        options = {"path": str(self.queue), "lease_s": 2.0, "heartbeat_s": 0.5, "grace_s": 5.0}
        files = {
            "manage.py": MANAGE_PY,
            "proj/__init__.py": "",
            "proj/settings.py": SETTINGS_PY.format(options=repr(options)),
            "proj/urls.py": "urlpatterns = []\n",
            "jobs/__init__.py": "",
            "jobs/apps.py": APPS_PY,
        }
        for name, text in files.items():
            (root / name).parent.mkdir(exist_ok=True)
            (root / name).write_text(text)
        self.set_value(1)
        self.store = Store(self.queue)

    def set_value(self, value: int) -> None:
        (self.root / "jobs" / "tasks.py").write_text(TASKS_PY.format(value=value))

    def env(self) -> dict[str, str]:
        # No PYTHONPATH (manage.py's folder is on sys.path); no .pyc, which a same-second
        # rewrite could leave looking fresh.
        return {**subprocess_env(settings=None, pythonpath=()), "PYTHONDONTWRITEBYTECODE": "1"}

    def start(self, argv: list[str]) -> Started:
        return self.procs.start(argv, env=self.env(), cwd=self.root)

    def enqueue(self, name: str, *args: object) -> str:
        job_id = new_job_id()
        self.store.enqueue(
            [NewJob(job_id=job_id, task_path=f"jobs.tasks.{name}", args_json=json.dumps(args))]
        )
        return job_id

    def result(self, job_id: str, timeout_s: float = 15) -> JobRecord:
        job: JobRecord = wait_for(
            lambda: (j := self.store.get(job_id)).state.is_finished and j,
            timeout_s=timeout_s,
            what=f"task {job_id} to finish",
        )
        assert job.state == JobState.SUCCESSFUL, job.errors
        return job

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.store.get_workers()]

    def edit_until_reloaded(self, value: int, old: int, timeout_s: float = 20) -> int:
        """Set ``VALUE`` in the task module until runserver's pool restarts; return its pid.

        The autoreloader notes a file's mtime the first time it scans it, about a second after
        start: an edit made before that scan is taken for the original, so edit again.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self.set_value(value)
            try:
                return self.new_worker([old], timeout_s=min(2, deadline - time.monotonic()))
            except AssertionError:
                if time.monotonic() >= deadline:
                    raise

    def ctrl_c(self, server: Started) -> None:
        """Press Ctrl-C in runserver's terminal; wait until none of its processes is left.

        The pool unregisters as it stops, unless Django's autoreloader SIGKILLs the serving
        child first, 0.25 s after Ctrl-C: then its row remains, naming a dead process.
        """
        os.killpg(server.pid, signal.SIGINT)  # a terminal sends it to the whole process group
        assert server.wait(timeout_s=10) == 0, server.output
        wait_for(lambda: not self.procs.survivors(), timeout_s=5, what="no process left")
        assert not [w for w in self.store.get_workers() if is_alive(w.pid)]

    def new_worker(self, old: list[int], timeout_s: float = 20) -> int:
        """Wait until exactly one worker is registered and it is not one of ``old``."""
        return wait_for(
            lambda: len(pids := self.worker_pids()) == 1 and pids[0] not in old and pids[0],
            timeout_s=timeout_s,
            what=f"one worker, not {old}",
        )


@pytest.fixture
def project(tmp_path: Path, procs: ProcessGroup) -> Iterator[Project]:
    project = Project(tmp_path, procs)
    yield project
    project.store.close()


def report(what: str, seconds: float) -> None:
    print(f"\n[timing] {what}: {seconds * 1000:.0f} ms")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_runserver_runs_tasks_in_one_pool_reloads_new_code_and_leaves_nothing_at_ctrl_c(
    project: Project,
) -> None:
    server = project.start([sys.executable, "manage.py", "runserver", f"127.0.0.1:{free_port()}"])
    first = project.new_worker([])
    # The pool runs in the serving child, not in the autoreloader's parent.
    assert first != server.pid and is_alive(first)
    assert server.pid not in project.worker_pids()
    assert project.result(project.enqueue("answer")).return_json == "1"
    assert project.worker_pids() == [first]

    server.wait_for_line("Quit the server with", timeout_s=15)  # about when the first scan ends
    changed = time.monotonic()
    project.edit_until_reloaded(2222, first)
    report("task module edited -> new runserver pool", time.monotonic() - changed)

    assert not is_alive(first)
    assert project.result(project.enqueue("answer")).return_json == "2222"
    # One pool. (In a shared checkout an edit to litetasks itself may reload runserver again.)
    assert len(project.worker_pids()) == 1

    marker = project.root / "slow.started"
    slow = project.enqueue("slow", str(marker), 2.0)
    wait_for(marker.exists, timeout_s=15, what="the slow task to start")
    pressed = time.monotonic()
    project.ctrl_c(server)
    report("Ctrl-C -> runserver gone, its running 2 s task done", time.monotonic() - pressed)
    # The running task had its grace period (OPTIONS["autorun_grace_s"], 5 s): it finished,
    # once, although Django's autoreloader would SIGKILL its serving child 0.25 s after Ctrl-C.
    assert project.store.get_workers() == []
    job = project.store.get(slow)
    assert (job.state, job.attempts, job.errors, job.return_json) == (
        JobState.SUCCESSFUL,
        1,
        (),
        "2222",
    )
    assert marker.read_text() == "started\n"
    assert project.store.counts() == {("default", JobState.SUCCESSFUL): 3}


@pytest.mark.slow
def test_run_reload_restarts_the_pool_on_a_change_after_the_running_task_finishes(
    project: Project,
) -> None:
    watcher = project.start(litetasks_argv("run", "--reload", "--processes", "1", "--threads", "2"))
    first = project.new_worker([])
    marker = project.root / "slow.started"
    slow = project.enqueue("slow", str(marker), 2.0)
    wait_for(marker.exists, timeout_s=15, what="the slow task to start")

    changed = time.monotonic()
    project.set_value(2222)
    second = project.new_worker([first])
    report("task module edited -> new --reload pool", time.monotonic() - changed)

    done = project.result(slow)  # the old pool let it finish, with the old code
    assert (done.return_json, done.errors, done.attempts) == ("1", (), 1)
    assert project.result(project.enqueue("answer")).return_json == "2222"
    assert project.worker_pids() == [second]

    watcher.send(signal.SIGTERM)
    assert watcher.wait(timeout_s=10) == 0, watcher.output
    assert project.procs.survivors() == []
    assert project.store.get_workers() == []
    assert project.store.counts() == {("default", JobState.SUCCESSFUL): 2}
