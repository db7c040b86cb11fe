"""``ps`` and ``top`` tell the supervisor from its workers (Linux process names)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ProcessGroup, litetasks_argv, subprocess_env, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_supervisor_and_workers_name_themselves(
    backend: Any, procs: ProcessGroup, tmp_path: Path
) -> None:
    argv = litetasks_argv("run", "--processes", "2", "--threads", "1")
    supervisor = procs.start(argv, env=subprocess_env(tmp_path), cwd=tmp_path)
    workers = wait_for(
        lambda: len(found := backend.store.get_workers()) == 2 and found,
        timeout_s=15,
        what="two registered workers",
    )
    assert _comm(supervisor.pid) == "lt-supervisor"
    assert [_comm(worker.pid) for worker in workers] == ["lt-worker", "lt-worker"]
    supervisor.send(signal.SIGTERM)
    assert supervisor.wait(timeout_s=10) == 0, supervisor.output
