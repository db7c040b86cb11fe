"""The systems under test: how to set each one up in a throwaway folder and how to run its worker.

Every system gets its own folder, queue file and processes. Django-side systems get a settings
module written into that folder (``benchsettings.py``); huey is configured through environment
variables read by ``benchmarks.hueyapp``.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SYSTEMS", "System", "select"]

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SETTINGS_MODULE = "benchsettings"

_SETTINGS_TEMPLATE = """\
# Written by benchmarks/systems.py for one benchmark run.
SECRET_KEY = "benchmarks-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = {installed_apps!r}
DATABASES = {databases!r}
TASKS = {tasks!r}
"""

_WAL_NORMAL = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    """One system in one configuration."""

    key: str  # unique, used in the table and the JSON
    family: str  # what ``--only`` selects
    label: str
    kind: str  # "django" or "huey": which client and which drain protocol
    settings_note: str
    drain_command: tuple[str, ...] = ()  # exits 0 once the queue is empty (Django kinds)
    serve_command: tuple[str, ...] = ()  # runs until SIGTERM
    pool_drain_command: tuple[str, ...] = ()  # the default pool, where it differs from 1 x 1
    bulk_note: str | None = None  # None: the system has no bulk enqueue API
    migrate: bool = False
    apps: tuple[str, ...] = ()
    databases: dict[str, Any] = field(default_factory=dict)
    tasks_setting: dict[str, Any] = field(default_factory=dict)
    huey_synchronous: str = ""

    def prepare(self, workdir: Path) -> dict[str, str]:
        """Write this system's configuration into ``workdir``; return its environment."""
        env = {"PYTHONPATH": f"{workdir}:{REPO_ROOT}"}
        if self.kind == "huey":
            env["BENCH_HUEY_PATH"] = str(workdir / "huey.sqlite3")
            env["BENCH_HUEY_SYNCHRONOUS"] = self.huey_synchronous
            return env
        env["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
        (workdir / f"{SETTINGS_MODULE}.py").write_text(self._settings_text(workdir))
        return env

    def _settings_text(self, workdir: Path) -> str:
        databases = _with_paths(self.databases, workdir)
        tasks = _with_paths(self.tasks_setting, workdir)
        return _SETTINGS_TEMPLATE.format(
            installed_apps=[*self.apps, "benchmarks.benchapp"], databases=databases, tasks=tasks
        )

    def setup(self, workdir: Path, env: dict[str, str], log: Path) -> None:
        """Create the schema where the system needs a separate step for it."""
        if self.migrate:
            with log.open("ab") as out:
                subprocess.run(
                    [PYTHON, "-m", "django", "migrate", "--verbosity", "0"],
                    cwd=workdir,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=120,
                )


def _with_paths(value: Any, workdir: Path) -> Any:
    """Replace ``{workdir}`` in every string of a nested settings value."""
    if isinstance(value, dict):
        return {key: _with_paths(item, workdir) for key, item in value.items()}
    if isinstance(value, str):
        return value.replace("{workdir}", str(workdir))
    return value


def _litetasks(*, full: bool = False) -> System:
    """litetasks at its defaults, or with ``synchronous=FULL`` (durable against power loss)."""
    one_by_one = ("run", "--threads", "1", "--processes", "1", "--settings", SETTINGS_MODULE)
    pool = ("run", "--settings", SETTINGS_MODULE, "--burst")
    options: dict[str, Any] = {"path": "{workdir}/tasks.sqlite3"}
    if full:
        options["synchronous"] = "FULL"
    return System(
        key="litetasks-full" if full else "litetasks",
        family="litetasks",
        label="litetasks FULL" if full else "litetasks",
        kind="django",
        settings_note=(
            "WAL, OPTIONS synchronous=FULL" if full else "defaults (WAL, synchronous=NORMAL)"
        )
        + "; litetasks run --threads 1 --processes 1",
        drain_command=(PYTHON, "-m", "litetasks", *one_by_one, "--burst"),
        serve_command=(PYTHON, "-m", "litetasks", *one_by_one),
        # The FULL variant is there for the drain; bulk and pool are measured once, at defaults.
        pool_drain_command=() if full else (PYTHON, "-m", "litetasks", *pool),
        bulk_note=None if full else "store-level Store.enqueue(list[NewJob]), one transaction",
        apps=("litetasks",),
        tasks_setting={
            "default": {
                "BACKEND": "litetasks.backend.SQLiteBackend",
                "QUEUES": [],
                "OPTIONS": options,
            }
        },
    )


def _dtdb(*, tuned: bool) -> System:
    database: dict[str, Any] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "{workdir}/db.sqlite3",
    }
    if tuned:
        database["OPTIONS"] = {"init_command": _WAL_NORMAL, "transaction_mode": "IMMEDIATE"}
        database["CONN_MAX_AGE"] = None
    django = (PYTHON, "-m", "django", "db_worker", "--settings", SETTINGS_MODULE)
    return System(
        key="dtdb-wal" if tuned else "dtdb",
        family="dtdb",
        label="django-tasks-db WAL" if tuned else "django-tasks-db",
        kind="django",
        settings_note=(
            "WAL, synchronous=NORMAL, transaction_mode=IMMEDIATE, CONN_MAX_AGE=None"
            if tuned
            else "Django defaults (rollback journal, synchronous=FULL)"
        )
        + "; drain: db_worker --batch --interval 0; latency/idle: db_worker (interval 1 s)",
        drain_command=(*django, "--batch", "--interval", "0"),
        serve_command=django,
        migrate=True,
        apps=("django_tasks_db",),
        databases={"default": database},
        tasks_setting={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
    )


def _huey(*, normal: bool) -> System:
    return System(
        key="huey-normal" if normal else "huey",
        family="huey",
        label="huey NORMAL" if normal else "huey",
        kind="huey",
        settings_note=(
            "SqliteHuey, WAL, synchronous=NORMAL"
            if normal
            else "SqliteHuey defaults (WAL, synchronous left at FULL)"
        )
        + "; huey_consumer -w 1 -k thread, default polling (-d 0.1 -b 1.15 -m 10)",
        serve_command=(
            PYTHON,
            "-m",
            "huey.bin.huey_consumer",
            "benchmarks.hueyapp.huey",
            "-w",
            "1",
            "-k",
            "thread",
        ),
        huey_synchronous="NORMAL" if normal else "",
    )


SYSTEMS: tuple[System, ...] = (
    _litetasks(),
    _litetasks(full=True),
    _dtdb(tuned=False),
    _dtdb(tuned=True),
    _huey(normal=False),
    _huey(normal=True),
)


def select(only: str | None) -> list[System]:
    """Return the systems named by ``--only`` (families or keys, comma-separated); all if None."""
    if not only:
        return list(SYSTEMS)
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    known = {s.key for s in SYSTEMS} | {s.family for s in SYSTEMS}
    unknown = sorted(wanted - known)
    if unknown:
        raise SystemExit(
            f"Unknown system(s) in --only: {', '.join(unknown)}. "
            f"Choose from: {', '.join(sorted(known))}."
        )
    return [s for s in SYSTEMS if s.key in wanted or s.family in wanted]
