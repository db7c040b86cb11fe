"""Real pools of two projects on one queue file, and a pool whose code is older than a task.

Before, a worker that found a row's task missing from its code failed it for good: two projects
pointing at one queue file destroyed each other's tasks (``TaskNotAllowed``), and a task added
after the pool started failed with "is not a task". Now the worker puts the task back to READY,
its attempt not counted, for a worker that has it; with none, it fails after the last of
``OPTIONS["not_found_delays"]`` (small here) with an error that says what to do.

Project A is this test suite (``tests`` app); project B is a ``shop`` app written to a temporary
folder. Each has its own settings module, both naming the same queue file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from litetasks._store.enqueueing import new_job_id
from litetasks._store.records import JobState, NewJob
from litetasks._store.store import Store
from tests.harness import REPO, ProcessGroup, Started, litetasks_argv, subprocess_env, wait_for

pytestmark = pytest.mark.slow

SHOP_TASKS = """
try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task


@task
def send_receipt(order_id):
    return f"receipt {order_id}"
"""
GOODBYE_TASK = """

@task
def say_goodbye(name):
    return f"goodbye {name}"
"""


@pytest.fixture
def projects(tmp_path: Path) -> Path:
    """Write the ``shop`` app and the settings of projects A (``tests``) and B (``shop``)."""
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "__init__.py").write_text("")
    (shop / "tasks.py").write_text(SHOP_TASKS)
    for name, app in (("project_a", "tests"), ("project_b", "shop")):
        (tmp_path / f"{name}.py").write_text(
            "import json, os\n"
            "from tests.settings import *  # noqa: F403\n"
            f"INSTALLED_APPS = ['litetasks', {app!r}]\n"
            "TASKS = {'default': {**TASKS['default'], 'OPTIONS': {  # noqa: F405\n"
            f"    'path': {str(tmp_path / 'tasks.sqlite3')!r},\n"
            "    'not_found_delays': json.loads(os.environ['NOT_FOUND_DELAYS']),\n"
            "}}}\n"
        )
    return tmp_path


def env_of(folder: Path, project: str, delays: list[float]) -> dict[str, str]:
    env = subprocess_env(folder, settings=project, pythonpath=(folder, REPO))
    env["NOT_FOUND_DELAYS"] = json.dumps(delays)
    return env


def start_pool(procs: ProcessGroup, folder: Path, project: str, delays: list[float]) -> Started:
    argv = litetasks_argv("run", "--processes", "1", "--threads", "1")
    return procs.start(argv, env=env_of(folder, project, delays), cwd=folder)


def enqueue_in(folder: Path, project: str, module: str, name: str, *args: object) -> str:
    """Enqueue ``module.name(*args)`` from a fresh process of ``project``; return its id."""
    script = (
        f"import django; django.setup()\nfrom {module} import {name}\n"
        f"print({name}.enqueue(*{args!r}).id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=folder,
        env=env_of(folder, project, []),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


def stop(pool: Started) -> None:
    pool.send(signal.SIGTERM)
    assert pool.wait(30) == 0, pool.output


def test_a_task_of_another_project_is_put_back_and_run_by_the_pool_that_has_it(
    projects: Path, procs: ProcessGroup
) -> None:
    store = Store(projects / "tasks.sqlite3")
    pool_a = start_pool(procs, projects, "project_a", [0.5] * 20)
    wait_for(store.get_workers, timeout_s=30, what="pool A to register")

    job_id = enqueue_in(projects, "project_b", "shop.tasks", "send_receipt", 7)

    wait_for(lambda: store.get(job_id).put_backs >= 1, timeout_s=30, what="a put-back by A")
    stop(pool_a)
    assert "path=shop.tasks.send_receipt is not in this worker's code" in pool_a.output
    job = store.get(job_id)
    assert (job.state, job.attempts, job.worker_ids, job.errors) == (JobState.READY, 0, (), ())

    pool_b = start_pool(procs, projects, "project_b", [])
    [worker_b] = wait_for(store.get_workers, timeout_s=30, what="pool B to register")
    wait_for(
        lambda: store.get(job_id).state is JobState.SUCCESSFUL, timeout_s=30, what="B to run it"
    )
    stop(pool_b)

    job = store.get(job_id)
    assert job.return_json == '"receipt 7"'
    assert (job.attempts, job.worker_ids, job.errors) == (1, (worker_b.worker_id,), ())
    assert job.put_backs >= 1


def test_with_no_pool_that_has_it_a_task_fails_after_the_last_put_back_saying_what_to_do(
    projects: Path, procs: ProcessGroup
) -> None:
    store = Store(projects / "tasks.sqlite3")
    pool_a = start_pool(procs, projects, "project_a", [0.05, 0.05])
    [worker_a] = wait_for(store.get_workers, timeout_s=30, what="pool A to register")

    job_id = enqueue_in(projects, "project_b", "shop.tasks", "send_receipt", 7)
    own = new_job_id()
    store.enqueue([NewJob(job_id=own, task_path="tests.tasks.add", args_json="[20, 22]")])

    wait_for(lambda: store.get(job_id).state is JobState.FAILED, timeout_s=30, what="FAILED")
    wait_for(lambda: store.get(own).state is JobState.SUCCESSFUL, timeout_s=30, what="A's task")
    assert [w.worker_id for w in store.get_workers()] == [worker_a.worker_id]  # same process
    stop(pool_a)

    job = store.get(job_id)
    assert (job.attempts, job.put_backs) == (1, 2)
    [error] = job.errors
    assert error.exception_class_path == "litetasks.exceptions.TaskNotFound"
    message = error.traceback.rstrip("\n")
    assert message.startswith(
        "litetasks.exceptions.TaskNotFound: Task 'shop.tasks.send_receipt' is not in an "
        "installed app of the workers (INSTALLED_APPS, or TASKS['default']['OPTIONS']"
        "['task_modules']), so they did not import it (tried 3 times by the workers over "
    )
    assert message.endswith(
        "If another project uses this queue file, give each project its own file: one queue "
        "file belongs to one project. If its app is new, add it to INSTALLED_APPS, restart the "
        "workers (they load the code when they start), then `litetasks retry " + job_id + "`."
    )
    assert store.get(own).return_json == "42"


def test_a_task_added_after_the_pool_started_is_put_back_until_the_pool_restarts(
    projects: Path, procs: ProcessGroup
) -> None:
    store = Store(projects / "tasks.sqlite3")
    old_pool = start_pool(procs, projects, "project_b", [0.5] * 20)
    wait_for(store.get_workers, timeout_s=30, what="the pool to register")

    # A deploy: new code on disk, the web process (here: a fresh process) enqueues the new task.
    with (projects / "shop" / "tasks.py").open("a") as tasks_py:
        tasks_py.write(GOODBYE_TASK)
    job_id = enqueue_in(projects, "project_b", "shop.tasks", "say_goodbye", "old pool")

    wait_for(lambda: store.get(job_id).put_backs >= 1, timeout_s=30, what="a put-back")
    stop(old_pool)
    assert "module 'shop.tasks' has no 'say_goodbye'" in old_pool.output

    new_pool = start_pool(procs, projects, "project_b", [0.5] * 20)
    wait_for(lambda: store.get(job_id).state is JobState.SUCCESSFUL, timeout_s=30, what="it to run")
    stop(new_pool)
    job = store.get(job_id)
    assert (job.return_json, job.attempts, job.errors) == ('"goodbye old pool"', 1, ())


def test_two_projects_on_one_queue_file_run_each_others_tasks_to_success(
    projects: Path, procs: ProcessGroup
) -> None:
    """Both pools running, each project enqueueing 50 tasks, all succeed. Before, a task failed
    at once (TaskNotAllowed) whenever the other project's worker claimed it first: 22 and 27 of
    100 of B's tasks in two runs (with put-backs alone, no skipping, 70 of 100 used up all
    their put-backs, A's idle worker winning every claim)."""
    from litetasks._store.config import DEFAULT_NOT_FOUND_DELAYS_S

    store = Store(projects / "tasks.sqlite3")
    delays = list(DEFAULT_NOT_FOUND_DELAYS_S)
    argv = litetasks_argv("run", "--processes", "1", "--threads", "2")
    for project in ("project_a", "project_b"):
        procs.start(argv, env=env_of(projects, project, delays), cwd=projects)
    wait_for(lambda: len(store.get_workers()) == 2, timeout_s=30, what="both pools to register")

    script = (
        "import django; django.setup()\n"
        "from {module} import {name}\n"
        "for i in range(50): {name}.enqueue({args})\n"
    )
    for project, module, name, args in (
        ("project_b", "shop.tasks", "send_receipt", "i"),
        ("project_a", "tests.tasks", "add", "i, 1"),
    ):
        subprocess.run(
            [sys.executable, "-c", script.format(module=module, name=name, args=args)],
            cwd=projects,
            env=env_of(projects, project, delays),
            check=True,
            timeout=60,
        )

    def finished() -> dict[JobState, int]:
        counts: dict[JobState, int] = {}
        for (_, state), count in store.counts().items():
            counts[state] = counts.get(state, 0) + count
        return (
            counts
            if counts.get(JobState.SUCCESSFUL, 0) + counts.get(JobState.FAILED, 0) == 100
            else {}
        )

    assert wait_for(finished, timeout_s=60, what="all 100 tasks") == {JobState.SUCCESSFUL: 100}
