"""``litetasks run --burst`` and ``--until-empty``: what they drain, what they leave, and the
line that says so. Real ``litetasks run`` processes in a scratch project."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from litetasks._store.records import JobState
from tests.cli.scratch import enqueue, run, shop
from tests.harness import REPO, ProcessGroup, litetasks_argv, stop, subprocess_env, wait_for

pytestmark = pytest.mark.slow

SECOND_US = 1_000_000


def test_burst_runs_what_is_due_and_says_what_it_leaves(tmp_path: Path) -> None:
    store, _ = shop(tmp_path)
    ok = enqueue(store, "ok")
    broken = enqueue(store, "broken")
    flaky = enqueue(store, "flaky_slow", str(tmp_path / "flaky"), max_attempts=2)
    later = enqueue(store, "ok", run_after_us=store.now_us() + 3600 * SECOND_US)

    code, out, err = run(tmp_path, "--burst")

    assert code == 0, out + err
    states = {job_id: store.get(job_id).state for job_id in (ok, broken, flaky, later)}
    assert states == {
        ok: JobState.SUCCESSFUL,
        broken: JobState.FAILED,
        flaky: JobState.READY,  # its retry waits for its back-off: a burst does not
        later: JobState.READY,
    }
    assert out.splitlines()[-1].startswith(
        "Ran 3 tasks: 1 SUCCESSFUL, 1 FAILED, 1 waiting for a retry. Left in the queues served: "
        "0 READY now, 2 READY later (the first in "
    ), out


def test_until_empty_waits_for_retries_and_deferred_tasks(tmp_path: Path) -> None:
    store, _ = shop(tmp_path)
    flaky = enqueue(store, "flaky", str(tmp_path / "flaky"), max_attempts=2)
    soon = enqueue(store, "ok", run_after_us=store.now_us() + 2 * SECOND_US)

    started = time.monotonic()
    code, out, err = run(tmp_path, "--until-empty")
    took = time.monotonic() - started

    assert code == 0, out + err
    for job_id in (flaky, soon):
        job = store.get(job_id)
        assert job.state == JobState.SUCCESSFUL, (job, out, err)
    assert store.get(flaky).attempts == 2
    assert out.splitlines()[-1] == (
        "Ran 2 tasks: 2 SUCCESSFUL. Left in the queues served: 0 READY now, "
        "0 READY later, 0 RUNNING elsewhere."
    ), out
    assert took < 20, took


def test_until_empty_due_within_leaves_what_is_due_later(tmp_path: Path) -> None:
    store, _ = shop(tmp_path)
    soon = enqueue(store, "ok", run_after_us=store.now_us() + 1 * SECOND_US)
    later = enqueue(store, "ok", run_after_us=store.now_us() + 600 * SECOND_US)

    started = time.monotonic()
    code, out, err = run(tmp_path, "--until-empty", "--due-within", "5")

    assert code == 0, out + err
    assert time.monotonic() - started < 20
    assert store.get(soon).state == JobState.SUCCESSFUL
    assert store.get(later).state == JobState.READY
    assert "Ran 1 task: 1 SUCCESSFUL. Left in the queues served: 0 READY now, 1 READY later" in out


def test_due_within_needs_until_empty(tmp_path: Path) -> None:
    shop(tmp_path)
    code, _, err = run(tmp_path, "--burst", "--due-within", "5")
    assert (code, err) == (2, "litetasks: error: --due-within needs --until-empty.\n")


def test_until_empty_waits_for_a_task_running_elsewhere(
    tmp_path: Path, procs: ProcessGroup
) -> None:
    store, _ = shop(tmp_path)
    marker = tmp_path / "nap.started"
    nap = enqueue(store, "nap", str(marker), 2.0)
    env = subprocess_env(settings=None, pythonpath=(REPO,))
    other = procs.start(
        litetasks_argv("run", "--processes", "1", "--threads", "1"), env=env, cwd=tmp_path
    )
    wait_for(marker.exists, timeout_s=15, what="the nap to start under the other pool")

    code, out, err = run(tmp_path, "--burst")
    assert code == 0, out + err
    assert out.splitlines()[-1].endswith("0 READY later, 1 RUNNING elsewhere."), out

    code, out, err = run(tmp_path, "--until-empty")
    assert code == 0, out + err
    assert store.get(nap).state == JobState.SUCCESSFUL
    assert out.splitlines()[-1] == (
        "Ran 0 tasks. Left in the queues served: 0 READY now, 0 READY later, 0 RUNNING elsewhere."
    ), out
    assert stop(other) == 0


def test_until_empty_stops_waiting_at_sigterm_and_says_what_is_left(
    tmp_path: Path, procs: ProcessGroup
) -> None:
    store, _ = shop(tmp_path)
    enqueue(store, "ok", run_after_us=store.now_us() + 600 * SECOND_US)
    env = subprocess_env(settings=None, pythonpath=(REPO,))
    drain = procs.start(
        litetasks_argv("run", "--processes", "1", "--threads", "1", "--until-empty"),
        env=env,
        cwd=tmp_path,
    )
    drain.wait_for_line("stopped", timeout_s=15)  # the first burst is over: it waits

    sent = time.monotonic()
    assert stop(drain, signal.SIGTERM) == 0
    assert time.monotonic() - sent < 2
    drain.wait(timeout_s=5)  # and its last lines read
    assert drain.lines[-1].startswith(
        "Ran 0 tasks. Left in the queues served: 0 READY now, 1 READY later (the first in "
    ), drain.output
