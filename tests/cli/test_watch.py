"""``litetasks status --watch`` in a real subprocess: piped, on a terminal, and stopped."""

from __future__ import annotations

import json
import os
import pty
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path

from litetasks._store.enqueueing import new_job_id
from litetasks._store.records import NewJob
from litetasks._store.store import Store
from tests.harness import litetasks_argv, subprocess_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def enqueue(queue_dir: Path, queue: str) -> None:
    with Store(queue_dir / "tasks.sqlite3") as store:
        store.enqueue([NewJob(job_id=new_job_id(), task_path="tests.tasks.noop", queue_name=queue)])


def start(tmp_path: Path, *args: str, **io: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        litetasks_argv("status", "--watch", "--interval", "0.2", *args),
        env=subprocess_env(tmp_path),
        cwd=tmp_path,
        text=True,
        **io,  # type: ignore[call-overload]
    )


def test_piped_it_prints_the_status_once_per_interval_until_ctrl_c(tmp_path: Path) -> None:
    enqueue(tmp_path, "emails")
    with start(tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        stamps, ready = 0, []  # READY in the emails queue, per refresh
        deadline = time.monotonic() + 30
        while len(ready) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            stamps += line.startswith("--- ")
            if line.startswith("│ emails"):
                ready.append([c.strip() for c in line.split("│") if c.strip()][1])
                if len(ready) == 1:
                    enqueue(tmp_path, "emails")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "Traceback" not in proc.stderr.read()
    assert ready == ["1", "2", "2"]  # each refresh reads the file again
    assert stamps == 3


def test_json_prints_one_object_per_interval(tmp_path: Path) -> None:
    with start(tmp_path, "--json", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        second = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert first["queues"] == second["queues"]
    assert set(first["queues"]) == {"default", "emails", "reports"}


def test_on_a_terminal_it_redraws_in_place_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    enqueue(tmp_path, "reports")
    controller, terminal = pty.openpty()
    # A selector, not select(): late in a long test run the pty's descriptor may be above 1023.
    reader = selectors.DefaultSelector()
    reader.register(controller, selectors.EVENT_READ)

    def read(timeout_s: float) -> bytes:
        try:
            return os.read(controller, 65536) if reader.select(timeout_s) else b""
        except OSError:  # the terminal's other side is closed: nothing more to read
            return b""

    with start(tmp_path, stdin=terminal, stdout=terminal, stderr=terminal) as proc:
        os.close(terminal)
        output = b""
        deadline = time.monotonic() + 30
        while output.count(b"Ctrl-C to stop") < 3 and time.monotonic() < deadline:
            output += read(0.5)
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            output += read(0.1)  # keep the pty drained, so a last redraw cannot block the exit
        assert proc.wait(timeout=1) == 0
    reader.close()
    os.close(controller)
    text = ANSI.sub("", output.decode(errors="replace"))
    assert output.count(b"Ctrl-C to stop") >= 3, text  # redrawn, not printed once
    assert "reports" in text and "READY" in text
    assert "Traceback" not in text
