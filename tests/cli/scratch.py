"""A scratch Django project for tests of ``litetasks run`` as a user runs it: an app ``shop``
with a few tasks, DEBUG on, and jobs put straight into its queue file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from litetasks._django.backend import new_job_id
from litetasks._store.records import NewJob
from litetasks._store.store import Store
from tests.harness import REPO, run_cli, subprocess_env, write_project

__all__ = ["SHOP_TASKS", "burst", "enqueue", "lines_about", "run", "shop"]

SHOP_TASKS = """
import time
from pathlib import Path

from litetasks import fixed

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task


@task
def ok():
    return 1


@task
def broken():
    raise ValueError("out of stock")


def fail_once(marker):
    if not Path(marker).exists():
        Path(marker).write_text("failed once")
        raise ConnectionError("try again")
    return 2


@task(max_attempts=2, backoff=fixed(1))
def flaky(marker):
    # Fails its first attempt, succeeds the next, a second later.
    return fail_once(marker)


@task(max_attempts=2, backoff=fixed(60))
def flaky_slow(marker):
    # Fails its first attempt; the next is a minute later.
    return fail_once(marker)


@task
def nap(marker, seconds):
    Path(marker).write_text("started")
    time.sleep(seconds)
    return 3
"""


def shop(root: Path, settings: str = "") -> tuple[Store, Path]:
    """Write the project under ``root``; return a store on its queue file, and the file."""
    queue = write_project(root)
    (root / "shop").mkdir()
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "tasks.py").write_text(SHOP_TASKS)
    with (root / "proj" / "settings.py").open("a") as file:
        file.write('DEBUG = True\nINSTALLED_APPS += ["shop"]\n' + textwrap.dedent(settings))
    return Store(queue), queue


def enqueue(store: Store, name: str, *args: Any, **fields: Any) -> str:
    """Put ``shop.tasks.<name>(*args)`` in the queue file (``fields``: of ``NewJob``)."""
    job_id = new_job_id()
    store.enqueue(
        [
            NewJob(
                job_id=job_id,
                task_path=f"shop.tasks.{name}",
                args_json=json.dumps(list(args)),
                **fields,
            )
        ]
    )
    return job_id


def run(root: Path, *args: str) -> tuple[int, str, str]:
    """Run ``litetasks run *args`` (one process, one thread) in ``root``: code, stdout, stderr."""
    env = subprocess_env(settings=None, pythonpath=(REPO,))
    done = run_cli("run", "--processes", "1", "--threads", "1", *args, cwd=root, env=env)
    return done.returncode, done.stdout, done.stderr


def burst(root: Path, *args: str) -> str:
    """Run ``litetasks run --burst`` in ``root``; return what it printed (stdout and stderr)."""
    code, out, err = run(root, "--burst", *args)
    assert code == 0, out + err
    return out + err


def lines_about(output: str, job_id: str, state: str) -> list[str]:
    return [line for line in output.splitlines() if f"id={job_id}" in line and state in line]
