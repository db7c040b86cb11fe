"""When the supervisor replaces exited workers: at once, unless they exit as fast as they start."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import pytest

from litetasks._runtime.restarts import RestartLimit, describe_exit
from tests.harness import ProcessGroup, subprocess_env


def _delays(limit: RestartLimit, exits: list[tuple[float, float]]) -> list[float]:
    """Feed ``(when, lived_s)`` exits of workers that exited as they may; return the delays."""
    return [
        round(limit.plan(now, pid=7, code=0, lived_s=lived, crashes=None)[0] - now, 3)
        for now, lived in exits
    ]


def test_a_whole_pool_recycled_at_once_is_replaced_at_once() -> None:
    limit = RestartLimit(budget=8 + 2)

    assert _delays(limit, [(100.0, 60.0)] * 8) == [0.0] * 8


def test_workers_exiting_as_fast_as_they_start_are_replaced_later_and_later() -> None:
    limit = RestartLimit(budget=4)
    exits = [(i * 0.01, 0.01) for i in range(14)]

    assert _delays(limit, exits) == [0, 0, 0, 0, 0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]


def test_the_storm_ends_when_a_worker_lives() -> None:
    limit = RestartLimit(budget=2)
    _delays(limit, [(0.0, 0.01), (0.01, 0.01), (0.02, 0.01), (0.5, 0.01)])

    # Past the window, a worker that lived is replaced at once; a short-lived one, still later.
    assert _delays(limit, [(10.0, 0.01)]) == [2.0]
    assert _delays(limit, [(20.0, 5.0), (21.0, 0.01)]) == [0.0, 0.0]


def test_a_crashing_slot_backs_off_on_its_own_and_starts_afresh_after_a_long_life() -> None:
    limit = RestartLimit(budget=100)

    def crash(now: float, lived_s: float, crashes: int) -> tuple[float, int]:
        when, crashes = limit.plan(now, pid=7, code=1, lived_s=lived_s, crashes=crashes)
        return when - now, crashes

    assert crash(0.0, 0.1, 0) == (0.5, 1)
    assert crash(10.0, 0.1, 1) == (1.0, 2)
    assert crash(20.0, 0.1, 6) == (30.0, 7)
    assert crash(100.0, 31.0, 7) == (0.0, 0)


def test_the_storm_is_logged_in_one_line_saying_why(caplog: pytest.LogCaptureFixture) -> None:
    limit = RestartLimit(budget=2)
    with caplog.at_level(logging.WARNING, logger="litetasks._runtime.restarts"):
        _delays(limit, [(0.0, 0.01), (0.5, 0.01), (1.0, 0.01)])
        limit.plan(1.5, pid=42, code=-signal.SIGKILL, lived_s=0.2, crashes=None)

    assert caplog.messages == [
        "Workers are exiting as fast as they start (3 in the last 1.0 s, last: pid=7, exit "
        "code 0 after 0.0 s); restarting the next in 0.5 s",
        "Workers are exiting as fast as they start (4 in the last 1.5 s, last: pid=42, killed "
        "by SIGKILL after 0.2 s); restarting the next in 1.0 s",
    ]


@pytest.mark.parametrize(
    ("code", "said"), [(0, "exit code 0"), (75, "exit code 75"), (-9, "killed by SIGKILL")]
)
def test_describe_exit(code: int, said: str) -> None:
    assert describe_exit(code) == said


# -- a real supervisor -----------------------------------------------------------------------

# A supervisor whose workers end as soon as they start, as they did when the supervisor was a
# container's PID 1 (they took it for dead). Each start is one line in the STARTS file.
EXITING_WORKERS = """
import dataclasses, logging, os, sys
import django
django.setup()
from litetasks._runtime import pool as worker
from litetasks._django.compat import task_backends
from litetasks._runtime.supervisor import Supervisor

def end_at_once(pool):
    with open(os.environ["STARTS"], "a") as starts:
        starts.write(f"{os.getpid()}\\n")

worker.WorkerPool.run = end_at_once
logging.basicConfig(level=logging.INFO)
backend = task_backends["default"]
config = dataclasses.replace(backend.config.worker, processes=2, threads=1)
sys.exit(Supervisor(backend, config, {}).run())
"""


@pytest.mark.slow
def test_a_supervisor_whose_workers_exit_at_once_backs_off_and_still_stops_on_sigterm(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    starts = tmp_path / "starts.txt"
    env = {**subprocess_env(tmp_path), "STARTS": str(starts)}
    supervisor = procs.start([sys.executable, "-c", EXITING_WORKERS], env=env, cwd=tmp_path)

    supervisor.wait_for_line("restarting the next in 4.0 s", timeout_s=30)

    # Two at start, four replaced at once (the budget: 2 processes + 2), then 0.5 s, 1 s, 2 s
    # apart: the fourth wait is logged as the first three are over, or about to be.
    assert len(starts.read_text().splitlines()) <= 2 + 4 + 3, supervisor.output
    supervisor.send(signal.SIGTERM)
    assert supervisor.wait(timeout_s=10) == 0, supervisor.output
    assert procs.survivors() == []
