"""A Django site with the console, served by ``runserver``, and a ``litetasks run`` pool on its
queue file: what the browser tests (and ``python -m tests.browser.screenshots``) drive.

Everything lives in one folder: the settings module, the site's database, the queue file.
Users: ``admin`` (superuser), ``viewer`` (view permission only); every password is ``pw``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.test import override_settings

from litetasks._django.compat import task_backends
from litetasks._store.records import JobRecord, JobState
from tests.harness import (
    FAST,
    REPO,
    ProcessGroup,
    Started,
    litetasks_argv,
    subprocess_env,
    wait_for,
)

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "pw"

_MIGRATE = """
from django.core.management import call_command
call_command("migrate", run_syncdb=True, verbosity=0)
"""
_USERS = """
from django.contrib.auth.models import Permission, User
User.objects.create_superuser("admin", "admin@example.com", "pw")
viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
viewer.user_permissions.add(Permission.objects.get(codename="view_task"))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ConsoleSite:
    """The site in ``root``: its URL, its backend (in this process too) and its processes."""

    def __init__(self, root: Path, procs: ProcessGroup) -> None:
        self.root = root
        self.procs = procs
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tasks = {
            "default": {
                "BACKEND": "litetasks.backend.SQLiteBackend",
                "QUEUES": ["default", "emails"],
                "OPTIONS": {
                    "path": str(root / "tasks.sqlite3"),
                    "autorun": False,
                    "task_modules": ["tests.browser.console_tasks"],
                    **FAST,
                },
            }
        }
        self.env = subprocess_env(root, settings="console_settings", pythonpath=(REPO, root))
        self.server: Started | None = None
        self.pool: Started | None = None

    @property
    def backend(self) -> Any:
        return task_backends["default"]

    def write_settings(self) -> None:
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(self.root / "db.sqlite3")}
        (self.root / "console_settings.py").write_text(
            textwrap.dedent(
                f"""
                from tests.settings import *  # noqa: F403

                DATABASES = {{"default": {database!r}}}
                TASKS = {self.tasks!r}
                """
            )
        )

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "django", *args],
            env=self.env,
            cwd=self.root,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        self.write_settings()
        self.manage("shell", "--command", _MIGRATE + _USERS)  # one Django start for both
        argv = [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{self.port}"]
        self.server = self.procs.start(
            [*argv, "--noreload", "--insecure"], env=self.env, cwd=self.root
        )
        pool_argv = litetasks_argv("run", "--processes", "1", "--threads", "2")
        self.pool = self.procs.start(pool_argv, env=self.env, cwd=self.root)  # meanwhile
        wait_for(self._serves, timeout_s=60, interval_s=0.2, what="runserver to answer")
        wait_for(
            self.backend.store.get_workers,
            timeout_s=60,
            interval_s=0.1,
            what="the pool's worker to register",
        )

    def _serves(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/admin/login/", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_state(self, job_id: str, state: JobState, timeout_s: float = 30) -> JobRecord:
        def reached() -> JobRecord | None:
            job: JobRecord = self.backend.store.get(job_id)
            return job if job.state is state else None

        return wait_for(reached, timeout_s=timeout_s, interval_s=0.05, what=f"{job_id} {state}")


@contextlib.contextmanager
def running_site(root: Path) -> Iterator[ConsoleSite]:
    """Start the site in ``root``; stop every process it started on the way out."""
    with ProcessGroup().cleanup() as procs:
        site = ConsoleSite(root, procs)
        with override_settings(TASKS=site.tasks):
            try:
                site.start()
                yield site
            finally:
                for started in procs.started:
                    if os.environ.get("LITETASKS_CONSOLE_LOGS"):
                        print(f"\n--- {' '.join(started.proc.args)}\n{started.output}")
