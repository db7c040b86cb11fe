"""One realistic tasks module written for litetasks (tests/scaleout/portable_tasks.py) imports
and runs unchanged on Django's ImmediateBackend and DummyBackend, django-tasks-db and
django-tasks-redis, each with its own worker; the system check names what each ignores."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.scaleout.conftest import Site

pytestmark = pytest.mark.slow

RAN = Counter(
    [
        'send_welcome [5, "en"]',
        "sync_account [5]",
        'send_welcome [6, "en"]',  # fan_out's enqueue_many
        'send_welcome [7, "en"]',
        'send_welcome [8, "fr"]',  # enqueue_on_commit
    ]
)


def _portable(site: Site) -> dict:
    found = site.scenario("portable", 5)
    assert found["task_class"] == "Task"  # plain Django tasks: the options are not passed on
    # sync_account, build_report and charge declare options this backend ignores.
    assert found["checks"] == ["litetasks.W010"] * 3
    return found


@pytest.mark.parametrize("kind", ["immediate", "dummy"])
def test_the_tasks_module_runs_on_djangos_own_backends(kind: str, tmp_path: Path):
    site = Site(tmp_path, LITETASKS_SCALEOUT_DEFAULT=kind)
    found = _portable(site)

    if kind == "immediate":
        assert found["statuses"] == ["SUCCESSFUL"] * 3
        assert Counter(site.runs()) == RAN
    else:
        assert found["statuses"] == ["READY"] * 3
        assert site.runs() == []


def test_the_tasks_module_runs_on_django_tasks_db_with_its_worker(pg_db: str, tmp_path: Path):
    site = Site(tmp_path, LITETASKS_SCALEOUT_DEFAULT="db", LITETASKS_SCALEOUT_PG_DB=pg_db)
    found = _portable(site)
    site.run_target_worker("db", "default")

    assert Counter(site.runs()) == RAN
    assert {status for status, _, _ in site.results(found["ids"]).values()} == {"SUCCESSFUL"}


def test_the_tasks_module_runs_on_django_tasks_redis_with_its_worker(
    redis_prefix: str, tmp_path: Path
):
    site = Site(tmp_path, LITETASKS_SCALEOUT_DEFAULT="redis", LITETASKS_SCALEOUT_REDIS=redis_prefix)
    found = _portable(site)
    site.run_target_worker("redis", "default")

    assert Counter(site.runs()) == RAN
    assert {status for status, _, _ in site.results(found["ids"]).values()} == {"SUCCESSFUL"}
