"""``litetasks forward`` into django-tasks-db on PostgreSQL and django-tasks-redis on Redis,
with their real workers in subprocesses (slow: each test starts several Django processes)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

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

    time.sleep(5)  # the deferred task and the retry are due after 4 s and 2 s
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
