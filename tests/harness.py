"""The process harness every test module shares: run ``litetasks`` in subprocesses (environments,
bounded waits, cleanup of process trees), pools of real supervisors on one queue file, producer
processes, and the command line. Its fixtures (``procs``, ``open_pool``, ``pool``) are in
``conftest.py``."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from typer.testing import CliRunner

from litetasks._store.clock import wall_clock_us
from litetasks._store.enqueueing import new_job_id
from litetasks._store.liveness import this_process
from litetasks._store.records import JobRecord, JobState, NewJob, WorkerRecord
from litetasks.cli import app
from tests import tasks

__all__ = [
    "FAST",
    "QUEUES",
    "QUICK_STOP",
    "REPO",
    "WORKER_LOST",
    "Pool",
    "ProcessGroup",
    "Producers",
    "Started",
    "descendants",
    "invoke",
    "is_alive",
    "litetasks_argv",
    "manage",
    "report",
    "start_run",
    "stop",
    "subprocess_env",
    "wait_for",
    "worker_of_this_process",
    "write_project",
]

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# Variables of the calling environment that would change what a subprocess does.
_INHERITED_NOISE = (
    "DJANGO_SETTINGS_MODULE",
    "LITETASKS_TEST_DIR",
    "LITETASKS_THREADS",
    "LITETASKS_PROCESSES",
    "LITETASKS_PARENT_PID",
    "PYTHONPATH",
)


def subprocess_env(
    queue_dir: Path | None = None,
    *,
    settings: str | None = "tests.settings",
    pythonpath: Sequence[Path] = (REPO,),
) -> dict[str, str]:
    """Return an environment for a subprocess that sees this checkout and ``queue_dir``.

    ``settings=None`` leaves ``DJANGO_SETTINGS_MODULE`` unset; ``queue_dir`` becomes
    ``LITETASKS_TEST_DIR``, which ``tests/settings.py`` puts the queue file in.
    """
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_NOISE}
    env["PYTHONUNBUFFERED"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    if settings is not None:
        env["DJANGO_SETTINGS_MODULE"] = settings
    if queue_dir is not None:
        env["LITETASKS_TEST_DIR"] = str(queue_dir)
    return env


def litetasks_argv(*args: str) -> list[str]:
    """Return the argv that runs the ``litetasks`` console script of this interpreter.

    Without the installed script, run ``litetasks.cli.main`` the way a console script does:
    without the current folder on ``sys.path`` (``python -m`` would add it and hide bugs).
    """
    script = Path(sys.executable).parent / "litetasks"
    if script.is_file():
        return [str(script), *args]
    bootstrap = "import sys; del sys.path[0]; from litetasks.cli import main; main()"
    return [sys.executable, "-c", bootstrap, *args]


def worker_of_this_process(worker_id: str, **fields: Any) -> WorkerRecord:
    """A worker row of this process (its pid, host and domain, one thread, a heartbeat now), so
    it is alive to a liveness check; ``fields`` replace any of its fields."""
    record = this_process().worker(worker_id, None, wall_clock_us(), threads=1)
    return dataclasses.replace(record, **fields)


def run_cli(
    *args: str, cwd: Path, env: dict[str, str], argv: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``litetasks *args`` (or ``argv``) to completion and capture its output."""
    return subprocess.run(
        argv or litetasks_argv(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_for(
    predicate: Callable[[], T], *, timeout_s: float, interval_s: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"Timed out after {timeout_s} s waiting for {what or predicate}.")
        time.sleep(interval_s)


def descendants(pid: int) -> list[int]:
    """Return the pids of every live descendant of ``pid`` (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _marked(token: str) -> list[int]:
    """Return the pids of live processes whose environment carries ``token``."""
    needle = f"{_TOKEN_VAR}={token}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
    return found


_TOKEN_VAR = "LITETASKS_TEST_TOKEN"


class Started:
    """A running subprocess whose output (stdout and stderr) is collected line by line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, *, timeout_s: float) -> str:
        """Wait until a line containing ``text`` has been printed; return it."""

        def find() -> str | None:
            if self.proc.poll() is not None:
                self._reader.join(1)
            found = next((line for line in self.lines if text in line), None)
            if found is None and self.proc.poll() is not None:
                raise AssertionError(
                    f"Process exited ({self.proc.returncode}) without printing {text!r}:\n"
                    + self.output
                )
            return found

        return wait_for(find, timeout_s=timeout_s, what=f"a line with {text!r}")

    def close(self) -> None:
        """Stop reading (the process has exited or been killed)."""
        self._reader.join(5)
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()

    def send(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout_s: float) -> int:
        """Wait for the process to exit; fail with its output if it takes longer."""
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"pid {self.pid} still runs after {timeout_s} s:\n{self.output}"
            ) from None
        self._reader.join(5)
        return code


class ProcessGroup:
    """Start subprocesses and make sure none (nor their children) outlive the test.

    Each process gets a token in its environment, so that children which have left our process
    tree (a supervisor's workers start their own process group) are found and killed too.
    """

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.started: list[Started] = []
        self.token = os.urandom(8).hex()

    def start(self, argv: Sequence[str], *, env: dict[str, str], cwd: Path) -> Started:
        proc = subprocess.Popen(
            list(argv),
            env={**env, _TOKEN_VAR: self.token},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a signal we send reaches only the process we name
        )
        self.procs.append(proc)
        self.started.append(Started(proc))
        return self.started[-1]

    def survivors(self) -> list[int]:
        """Return the pids of processes started here (or their children) still running."""
        return _marked(self.token)

    def kill_all(self) -> None:
        """SIGKILL every started process and its descendants, then reap them."""
        pids = set(_marked(self.token))
        for proc in self.procs:
            if proc.poll() is None:
                pids.update([*descendants(proc.pid), proc.pid])
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for started in self.started:
            started.close()

    @contextlib.contextmanager
    def cleanup(self) -> Iterator[ProcessGroup]:
        try:
            yield self
        finally:
            self.kill_all()


# -- pools: one queue file, and real `litetasks run` supervisors on it --

FAST = {"lease_s": 2.0, "heartbeat_s": 0.5, "grace_s": 5.0}


class Pool:
    """One queue file in ``root``, a settings module naming it, and the pools run on it."""

    def __init__(self, root: Path, procs: ProcessGroup, backend: Any) -> None:
        self.root = root
        self.procs = procs
        self.backend = backend
        self.side = root / "ran.txt"
        self.labels: dict[str, str] = {}  # job id -> label in the side files

    @property
    def store(self) -> Any:
        return self.backend.store

    # -- processes -----------------------------------------------------------------------------

    def start(self, *args: str, processes: int = 1, threads: int = 1) -> Started:
        argv = litetasks_argv(
            "run", "--processes", str(processes), "--threads", str(threads), *args
        )
        env = subprocess_env(self.root, settings="pool_settings", pythonpath=(REPO, self.root))
        env["PYTHONFAULTHANDLER"] = "1"  # stop() dumps the stacks of a hung process
        return self.procs.start(argv, env=env, cwd=self.root)

    def children(self, count: int, timeout_s: float = 15) -> list[int]:
        """Wait until ``count`` live worker processes have registered; return their pids."""

        def live() -> list[int] | None:
            pids = [w.pid for w in self.store.get_workers() if is_alive(w.pid)]
            return pids if len(pids) == count else None

        return wait_for(live, timeout_s=timeout_s, what=f"{count} registered worker(s)")

    # -- tasks ---------------------------------------------------------------------------------

    def enqueue(self, label: str, sleep_s: float = 0.0, *, max_attempts: int = 1) -> str:
        """Enqueue ``tracked(side, label, sleep_s)``; through Django unless ``max_attempts`` > 1.

        Django's API cannot set ``max_attempts`` yet, so such rows go in through the store.
        """
        if max_attempts == 1:
            job_id = tasks.tracked.enqueue(str(self.side), label, sleep_s).id
        else:
            [job_id] = self.enqueue_raw([label], sleep_s, max_attempts=max_attempts)
        self.labels[job_id] = label
        return job_id

    def enqueue_raw(
        self, labels: list[str], sleep_s: float = 0.0, *, max_attempts: int = 1
    ) -> list[str]:
        """Insert ``tracked`` rows for ``labels`` in one transaction; return their ids."""
        jobs = [
            NewJob(
                job_id=new_job_id(),
                task_path=tasks.tracked.module_path,
                args_json=json.dumps([str(self.side), label, sleep_s]),
                max_attempts=max_attempts,
            )
            for label in labels
        ]
        self.store.enqueue(jobs)
        self.labels.update({job.job_id: label for job, label in zip(jobs, labels, strict=True)})
        return [job.job_id for job in jobs]

    def job(self, job_id: str) -> JobRecord:
        return self.store.get(job_id)

    def lines(self, suffix: str = "") -> list[tuple[str, int]]:
        """``(label, pid)`` per line of the side file (``.started``: one per start)."""
        path = Path(f"{self.side}{suffix}")
        if not path.exists():
            return []
        return [
            (label, int(pid)) for label, pid in (ln.split() for ln in path.read_text().splitlines())
        ]

    def started(self) -> collections.Counter[str]:
        return collections.Counter(label for label, _ in self.lines(".started"))

    def finished(self) -> collections.Counter[str]:
        return collections.Counter(label for label, _ in self.lines())

    def pid_running(self, label: str, start: int = 1, timeout_s: float = 15) -> int:
        """Wait for the ``start``-th start of ``label``; return the pid running it."""

        def nth() -> int | None:
            pids = [pid for seen, pid in self.lines(".started") if seen == label]
            return pids[start - 1] if len(pids) >= start else None

        return wait_for(nth, timeout_s=timeout_s, what=f"start {start} of task {label}")

    def wait_state(self, job_id: str, state: JobState, timeout_s: float = 15) -> JobRecord:
        return wait_for(
            lambda: (job := self.job(job_id)).state == state and job,
            timeout_s=timeout_s,
            interval_s=0.01,
            what=f"task {self.labels[job_id]} to be {state}",
        )

    def running(self) -> int:
        return sum(n for (_, state), n in self.store.counts().items() if state == JobState.RUNNING)

    # -- the end of every test -----------------------------------------------------------------

    def account(self) -> dict[str, JobRecord]:
        """Check what became of every task enqueued here; return the rows by label."""
        jobs = {label: self.job(job_id) for job_id, label in self.labels.items()}  # none lost
        assert sum(self.store.counts().values()) == len(jobs), self.store.counts()
        concurrent = Path(f"{self.side}.concurrent")
        assert not concurrent.exists(), f"ran twice at once: {concurrent.read_text()}"
        finished = self.finished()
        assert set(finished) <= set(jobs), set(finished) - set(jobs)
        for label, job in jobs.items():
            assert job.state != JobState.RUNNING, (label, job)
            assert job.attempts == len(job.worker_ids), (label, job)
            assert finished[label] == (job.state == JobState.SUCCESSFUL), (label, job, finished)
        return jobs


def stop(worker: Started, signum: int = signal.SIGTERM, timeout_s: float = 10) -> int:
    """Send ``signum`` and wait for the exit code; on a hang, fail with every thread's stack."""
    worker.send(signum)
    try:
        return worker.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        for pid in [*descendants(worker.pid), worker.pid]:  # faulthandler prints, then dies
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGABRT)
        worker.wait(timeout_s=5)
        raise AssertionError(f"pid {worker.pid} hung after {signum!r}:\n{worker.output}") from None


def report(what: str, seconds: float) -> None:
    print(f"\n[timing] {what}: {seconds * 1000:.0f} ms")


# -- what tests of real worker processes share --

QUEUES = ["default", "emails", "reports"]


WORKER_LOST = "litetasks.exceptions.WorkerLost"


def is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


# -- a pool that stops quickly (damaged files, moved files, copies) --

QUICK_STOP = {"lease_s": 2.0, "heartbeat_s": 0.5, "grace_s": 2.0}


def start_run(pool: Pool, *args: str, env: dict[str, str] | None = None) -> Started:
    env = env or subprocess_env(pool.root, settings="pool_settings", pythonpath=(REPO, pool.root))
    argv = litetasks_argv("run", "--processes", "1", "--threads", "2", *args)
    return pool.procs.start(argv, env=env, cwd=pool.root)


# -- the command line, in this process and as `python manage.py litetasks` --


def invoke(runner: CliRunner, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), prog_name="litetasks", catch_exceptions=False)


def write_project(
    root: Path, package: str = "proj", *, manage_py: bool = True, marker: str = ""
) -> Path:
    """Write a minimal Django project under ``root``; return the queue file it will use."""
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "settings.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path

            BASE_DIR = Path(__file__).resolve().parent.parent
            SECRET_KEY = "test"
            USE_TZ = True
            INSTALLED_APPS = ["litetasks"]
            DATABASES = {{
                "default": {{
                    "ENGINE": "django.db.backends.sqlite3",
                    "NAME": BASE_DIR / "db.sqlite3",
                }}
            }}
            TASKS = {{
                "default": {{
                    "BACKEND": "litetasks.backend.SQLiteBackend",
                    "QUEUES": ["default", "mail{marker}"],
                }}
            }}
            """
        )
    )
    if manage_py:
        (root / "manage.py").write_text(
            textwrap.dedent(
                f"""
                import os
                import sys

                if __name__ == "__main__":
                    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{package}.settings")
                    from django.core.management import execute_from_command_line

                    execute_from_command_line(sys.argv)
                """
            )
        )
    return root / "tasks.sqlite3"


def manage(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        cwd=tmp_path,
        env=subprocess_env(settings=None, pythonpath=()),
        argv=[sys.executable, "manage.py", "litetasks", *args],
    )


# -- producer processes enqueueing while something happens to the queue file --


class Producers:
    """Producer processes (``tests/produce.py``) enqueueing ``append_line`` tasks until told
    to stop; each acknowledged ``enqueue()`` is a line ``<id> <label>`` in its file."""

    def __init__(self, pool: Pool, count: int) -> None:
        self.stop_file = pool.root / "stop-producers"
        self.side = pool.root / "ran.txt"
        self.acks = [pool.root / f"acks-{index}.txt" for index in range(count)]
        env = subprocess_env(pool.root, settings="pool_settings", pythonpath=(REPO, pool.root))
        self.started = [
            pool.procs.start(
                [
                    sys.executable,
                    "-m",
                    "tests.produce",
                    str(acks),
                    str(self.stop_file),
                    str(self.side),
                    f"p{index}",
                ],
                env=env,
                cwd=pool.root,
            )
            for index, acks in enumerate(self.acks)
        ]

    def acknowledged(self) -> dict[str, str]:
        """Label by id of every task whose ``enqueue()`` returned (whole lines only)."""
        found: dict[str, str] = {}
        for path in self.acks:
            text = path.read_text() if path.exists() else ""
            for line in text.splitlines(keepends=True):
                if line.endswith("\n"):
                    job_id, label = line.split()
                    found[job_id] = label
        return found

    def wait_for(self, count: int) -> None:
        wait_for(lambda: len(self.acknowledged()) >= count, timeout_s=60, what=f"{count} acks")

    def finish(self) -> str:
        self.stop_file.touch()
        for started in self.started:
            assert started.wait(timeout_s=30) == 0, started.output
        return "\n".join(started.output for started in self.started)

    def runs(self) -> collections.Counter[str]:
        lines = self.side.read_text().splitlines() if self.side.exists() else []
        return collections.Counter(line.split()[0] for line in lines)
