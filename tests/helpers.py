"""Run ``litetasks`` in subprocesses: environments, bounded waits, and cleanup of process trees."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = [
    "REPO",
    "ProcessGroup",
    "Started",
    "descendants",
    "litetasks_argv",
    "subprocess_env",
    "wait_for",
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
