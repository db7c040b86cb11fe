"""``litetasks run --burst`` and ``--until-empty``: what they drain, what they leave, and the
line that says so. Real ``litetasks run`` processes in a scratch project."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from litetasks._store.records import JobState
from tests.cli.scratch import enqueue, run, shop

pytestmark = pytest.mark.slow

SECOND_US = 1_000_000


def test_burst_runs_what_is_due_and_says_what_it_leaves(tmp_path: Path) -> None:
    store, _ = shop(tmp_path)
    ok = enqueue(store, "ok")
    broken = enqueue(store, "broken")
    flaky = enqueue(store, "flaky", str(tmp_path / "flaky"), max_attempts=2)
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
        "Ran 3 tasks (1 READY, 1 FAILED, 1 SUCCESSFUL now). Left in the queues served: "
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
        "Ran 2 tasks (2 SUCCESSFUL now). Left in the queues served: 0 READY now, "
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
    assert (
        "Ran 1 task (1 SUCCESSFUL now). Left in the queues served: 0 READY now, 1 READY later"
        in out
    )


def test_due_within_needs_until_empty(tmp_path: Path) -> None:
    shop(tmp_path)
    code, _, err = run(tmp_path, "--burst", "--due-within", "5")
    assert (code, err) == (2, "litetasks: error: --due-within needs --until-empty.\n")
