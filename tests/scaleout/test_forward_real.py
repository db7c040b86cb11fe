"""``litetasks forward`` into django-tasks-db on PostgreSQL and django-tasks-redis on Redis,
with their real workers in subprocesses (slow: each test starts several Django processes)."""

from __future__ import annotations

import random
import re
import signal
import time
from collections import Counter

import apsw
import pytest

from tests.scaleout.conftest import Site

pytestmark = pytest.mark.slow


def test_forward_moves_a_mix_that_the_targets_worker_runs_exactly_once(target):
    name, site = target
    mix = site.scenario("mix", 20)
    expected: dict[str, str] = mix["expected"]

    dry = site.litetasks("forward", "--to", name, "--dry-run", check=False)
    assert "would move" in dry and "refused" in dry and "Queue 'reports' is not valid" in dry
    assert site.runs() == []  # the dry run moved nothing (charge's failed attempt wrote none)
    out = site.litetasks("forward", "--to", name, check=False)
    assert f"{len(expected)} task(s) moved to {name!r}, 1 refused" in out
    again = site.litetasks("forward", "--to", name, check=False)
    assert f"0 task(s) moved to {name!r}, 1 refused" in again

    time.sleep(max(0.0, mix["due_at"] - time.time()) + 0.5)  # the deferred task is due
    site.run_target_worker(name)

    runs = Counter(site.runs())
    assert runs == Counter(expected.values())  # every task once, with its arguments
    found = site.results([*expected, mix["refused"]])
    for old_id, line in expected.items():
        status, _, backend = found[old_id]
        assert (status, backend) == ("SUCCESSFUL", name), line
    assert found[mix["refused"]][:2] == ["READY", None]
    welcome = next(i for i, line in expected.items() if line == 'send_welcome [0, "de"]')
    assert found[welcome][1] == "welcome 0 de"


def _forwarded(site: Site) -> int:
    """How many tasks forwards have marked forwarded so far (read beside the running forward)."""
    with apsw.Connection(str(site.folder / "tasks.sqlite3"), flags=apsw.SQLITE_OPEN_READONLY) as db:
        db.set_busy_timeout(5000)
        return int(
            db.execute(
                "SELECT count(*) FROM jobs WHERE state = 'FORWARDED' AND forwarded_at IS NOT NULL"
            ).get
        )


def _kill_mid_forward(site: Site, name: str, at: int) -> bool:
    """Start ``litetasks forward`` and kill -9 it once ``at`` tasks are marked; False if it
    finished first."""
    proc = site.popen_litetasks("forward", "--to", name, "--batch", "25")
    try:
        while proc.poll() is None:
            if _forwarded(site) >= at:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.002)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_9_mid_forward_loses_nothing_and_duplicates_stay_within_the_window(target):
    name, site = target
    n = 400
    expected = site.scenario("bulk", n)["expected"]
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, n - 50), 4))
    kills = sum(_kill_mid_forward(site, name, at) for at in points)
    out = site.litetasks("forward", "--to", name)
    site.run_target_worker(name)

    runs = Counter(site.runs())
    assert set(runs) == set(expected.values()), f"seed {seed}: tasks lost"
    duplicates = sum(count - 1 for count in runs.values())
    # django-tasks-db: ids chosen by litetasks, none twice; Redis: at most one per kill.
    window = 0 if name == "db" else kills
    assert duplicates <= window, f"seed {seed}, kills at {points}: {duplicates} duplicates"
    assert kills >= 1, f"seed {seed}: no forward was interrupted ({points}); {out}"
    found = site.results(list(expected))
    assert {status for status, _, _ in found.values()} == {"SUCCESSFUL"}


def test_forward_rate_into_each_target(target):
    name, site = target
    site.scenario("bulk", 2000)
    out = site.litetasks("forward", "--to", name)
    rate = float(re.search(r"\((\d+) tasks/s\)", out).group(1))  # type: ignore[union-attr]
    print(f"forward into {name}: {rate:.0f} tasks/s (2000 tasks)")
    assert rate > 50, out
