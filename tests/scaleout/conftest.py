"""Per-run PostgreSQL databases and Redis key prefixes for the scale-out tests, and the
subprocesses (scenario steps, ``litetasks forward``, the targets' workers) that use them.

A missing service or package skips these tests with a message naming it, except in CI
(``CI=true``), where they are required and fail instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
PACKAGES = {"db": ("django_tasks_db", "psycopg"), "redis": ("django_tasks_redis", "redis")}
EXTRA = 'pip install -e ".[scaleout-test]" (Python >= 3.12)'


def _needs_python_312() -> None:
    """The scale-out tests run on Python >= 3.12 (CI's py312 job): django-tasks-redis needs it,
    and the Python 3.11 job runs Django 5.2, whose backport the Django 6 targets do not use."""
    if sys.version_info < (3, 12):
        pytest.skip("the scale-out tests run on Python >= 3.12 with Django 6 (the py312 job)")


@pytest.fixture(autouse=True)
def _python_312() -> None:
    _needs_python_312()


def unavailable(what: str) -> None:
    """Skip (a developer's machine) or fail (CI) because ``what`` is missing."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} (required in CI)", pytrace=False)
    pytest.skip(what)


def require(target: str) -> None:
    host, port = PG if target == "db" else REDIS
    name = "PostgreSQL" if target == "db" else "Redis"
    missing = [p for p in PACKAGES[target] if find_spec(p) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed: {EXTRA}")
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        unavailable(f"{name} is not reachable at {host}:{port} ({exc})")


@contextlib.contextmanager
def _pg_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of ``template``, if given), dropped afterwards."""
    import psycopg

    name = f"litetasks_scaleout_{uuid.uuid4().hex[:12]}"
    admin = dict(host=PG[0], port=PG[1], user="postgres", dbname="test", autocommit=True)
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield name
    finally:
        with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL database migrated once per run: each test's database is a copy of it (one
    ``migrate`` subprocess instead of one per test)."""
    _needs_python_312()  # a session fixture is set up before the autouse check above
    require("db")
    with _pg_database() as name:
        site = Site(tmp_path_factory.mktemp("pg-migrated"), LITETASKS_SCALEOUT_PG_DB=name)
        site.django("migrate", "--verbosity", "0")
        yield name


@pytest.fixture
def pg_db(pg_migrated: str) -> Iterator[str]:
    """A new PostgreSQL database for this test, migrated, dropped afterwards."""
    with _pg_database(template=pg_migrated) as name:
        yield name


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on Redis; its keys are deleted afterwards."""
    require("redis")
    import redis

    prefix = f"litetasks-scaleout-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis(host=REDIS[0], port=REDIS[1])
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    assert not list(client.scan_iter(match=f"{prefix}*"))


class Site:
    """One Django site of the scale-out settings: its environment and its commands."""

    def __init__(self, folder: Path, **env: str) -> None:
        self.folder = folder
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.scaleout.settings",
            "LITETASKS_SCALEOUT_QUEUE": str(folder / "tasks.sqlite3"),
            "PYTHONPATH": str(REPO),
            **env,
        }

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        done = subprocess.run(
            [sys.executable, *args],
            check=False,
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def scenario(self, command: str, arg: Any) -> Any:
        out = self.run("-m", "tests.scaleout.scenario", command, str(self.folder), str(arg))
        return json.loads(out.strip().splitlines()[-1])

    def django(self, *args: str, timeout: float = 120) -> str:
        return self.run("-m", "django", *args, timeout=timeout)

    def litetasks(self, *args: str, check: bool = True) -> str:
        return self.run("-m", "litetasks", *args, check=check)

    def popen_litetasks(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "litetasks", *args],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def results(self, ids: list[str]) -> dict[str, list[Any]]:
        ids_file = self.folder / "ids.json"
        ids_file.write_text(json.dumps(ids))
        return self.scenario("results", ids_file)  # type: ignore[no-any-return]

    def run_target_worker(self, target: str, alias: str | None = None) -> None:
        """Run the target's real worker for ``alias`` (default: ``target``) until its queue is
        empty."""
        alias = alias or target
        if target == "db":
            self.django(
                "db_worker",
                "--backend",
                alias,
                "--queue-name",
                "*",
                "--batch",
                "--no-startup-delay",
                "--interval",
                "0.1",
            )
        else:
            self.django("run_redis_tasks", "--backend", alias, timeout=300)

    def runs(self) -> list[str]:
        path = self.folder / "runs.log"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(params=["db", "redis"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Site]]:
    """A site with litetasks as "default" and one real target, ready (``pg_db`` is migrated)."""
    if request.param == "db":
        name = request.getfixturevalue("pg_db")
        site = Site(tmp_path, LITETASKS_SCALEOUT_PG_DB=name)
    else:
        prefix = request.getfixturevalue("redis_prefix")
        site = Site(tmp_path, LITETASKS_SCALEOUT_REDIS=prefix)
    yield request.param, site
