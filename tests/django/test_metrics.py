"""``litetasks.metrics``: real tasks run, the metrics scraped and parsed with prometheus_client."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import RequestFactory, override_settings
from prometheus_client.parser import text_string_to_metric_families

import litetasks.metrics
from litetasks._django.compat import FRAMEWORK, InvalidTaskBackend, task_backends
from litetasks.testing import drain
from tests import tasks
from tests.harness import litetasks_argv, subprocess_env, worker_of_this_process

TOKEN = "s3cret-token-for-scrapers"


@pytest.fixture
def backend(queue_path: Path) -> Iterator[Any]:
    setting = {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "QUEUES": ["default", "emails", "reports"],
            "OPTIONS": {"path": str(queue_path), "metrics_token": TOKEN},
        }
    }
    with override_settings(TASKS=setting):
        yield task_backends["default"]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape by (name, labels), parsed by prometheus_client's parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str):  # type: ignore[no-untyped-def]
    return scraped[(name, frozenset({"backend": "default", **labels}.items()))]


def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, content_type = litetasks.metrics.render()
    assert content_type.startswith("text/plain")
    return samples(body.decode())


def test_a_scrape_reports_real_tasks(backend) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        tasks.add.enqueue(i, 1)
    tasks.fail_value_error.enqueue()
    assert drain() == 4
    tasks.noop.using(queue_name="reports").enqueue()
    tasks.noop.using(queue_name="reports").enqueue()
    backend.store.pausing.pause_queue("reports")
    time.sleep(0.05)

    scraped = scrape()
    add, fail = "tests.tasks.add", "tests.tasks.fail_value_error"
    finished = "django_tasks_finished_total"
    assert value(scraped, finished, queue="default", task=add, status="SUCCESSFUL") == 3
    assert value(scraped, finished, queue="default", task=fail, status="FAILED") == 1
    length = "django_tasks_queue_length"
    assert value(scraped, length, queue="reports", status="READY") == 2
    assert value(scraped, length, queue="default", status="READY") == 0
    assert value(scraped, length, queue="reports", status="RUNNING") == 0
    age = value(scraped, "django_tasks_queue_oldest_ready_age_seconds", queue="reports")
    assert 0.04 <= age < 30
    assert value(scraped, "django_tasks_queue_oldest_ready_age_seconds", queue="emails") == 0
    duration = "django_tasks_duration_seconds"
    assert value(scraped, f"{duration}_count", queue="default", task=add) == 3
    assert value(scraped, f"{duration}_bucket", queue="default", task=add, le="+Inf") == 3
    assert 0 < value(scraped, f"{duration}_sum", queue="default", task=add) < 5
    wait = "django_tasks_queue_wait_seconds"
    assert value(scraped, f"{wait}_count", queue="default") == 4  # per queue, every task
    assert value(scraped, "litetasks_queue_paused", queue="reports") == 1
    assert value(scraped, "litetasks_queue_paused", queue="default") == 0
    assert value(scraped, "litetasks_workers", state="alive") == 0
    assert value(scraped, "litetasks_busy_threads") == 0
    assert value(scraped, "litetasks_threads") == 0
    assert value(scraped, "litetasks_db_size_bytes") > 0
    assert value(scraped, "litetasks_wal_size_bytes") >= 0

    backend.prune(older_than=timedelta(0))  # finished rows go; their counts stay
    again = scrape()
    assert value(again, finished, queue="default", task=add, status="SUCCESSFUL") == 3


def test_a_running_task_counts_as_a_busy_thread_of_a_live_worker(backend) -> None:  # type: ignore[no-untyped-def]
    backend.store.register_worker(worker_of_this_process("w-here"))
    tasks.noop.using(queue_name="emails").enqueue()
    backend.store.claim("w-here")
    scraped = scrape()
    assert value(scraped, "django_tasks_queue_length", queue="emails", status="RUNNING") == 1
    assert value(scraped, "litetasks_workers", state="alive") == 1
    assert value(scraped, "litetasks_workers", state="lost") == 0
    assert value(scraped, "litetasks_busy_threads") == 1


def test_threads_count_those_of_live_workers_and_none_for_an_older_row(backend) -> None:  # type: ignore[no-untyped-def]
    backend.store.register_worker(worker_of_this_process("w-here", threads=4))
    backend.store.register_worker(worker_of_this_process("w-older", threads=None))
    gone = worker_of_this_process("w-gone", threads=8, pid=2**22 + 7)  # no such process
    backend.store.register_worker(gone)

    scraped = scrape()

    assert value(scraped, "litetasks_workers", state="alive") == 2
    assert value(scraped, "litetasks_workers", state="lost") == 1
    assert value(scraped, "litetasks_threads") == 4


def request(**headers: str) -> Any:
    made = RequestFactory().get("/metrics/", headers=headers)
    made.user = SimpleNamespace(is_active=False, is_staff=False)
    return made


def test_the_view_answers_staff_and_bearers_of_the_token_only(backend) -> None:  # type: ignore[no-untyped-def]
    anonymous = litetasks.metrics.view(request())
    assert anonymous.status_code == 403
    assert b"django_tasks" not in anonymous.content
    wrong = litetasks.metrics.view(request(Authorization="Bearer not-the-token"))
    assert wrong.status_code == 403
    bearer = litetasks.metrics.view(request(Authorization=f"Bearer {TOKEN}"))
    assert bearer.status_code == 200
    assert b"django_tasks_queue_length" in bearer.content
    staff = request()
    staff.user = SimpleNamespace(is_active=True, is_staff=True)
    assert litetasks.metrics.view(staff).status_code == 200


def test_a_short_metrics_token_is_refused_saying_why(queue_path: Path) -> None:
    setting = {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "OPTIONS": {"path": str(queue_path), "metrics_token": "short"},
        }
    }
    with (
        override_settings(TASKS=setting),
        pytest.raises(InvalidTaskBackend, match="'metrics_token'] must be a string of 16"),
    ):
        # Made without raising, so that `manage.py check` reports it (litetasks.E005); refused
        # at first use.
        _ = task_backends["default"].config


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_litetasks_metrics_serves_a_port_and_stops_on_a_signal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    with subprocess.Popen(
        litetasks_argv("metrics", "--port", "0"),
        env=subprocess_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert "Serving litetasks metrics at http://127.0.0.1:" in line, line
            url = line.split(" at ")[1].strip()
            with urllib.request.urlopen(url, timeout=10) as response:
                scraped = samples(response.read().decode())
            queue_length = value(
                scraped, "django_tasks_queue_length", queue="default", status="READY"
            )
            assert queue_length == 0
            proc.send_signal(signum)
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()


def test_a_scrape_skips_other_libraries_backends_even_broken_ones(queue_path: Path) -> None:
    setting = {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "OPTIONS": {"path": str(queue_path)},
        },
        "broken": {"BACKEND": "nowhere.Backend"},
        "immediate": {"BACKEND": f"{FRAMEWORK}.backends.immediate.ImmediateBackend"},
    }
    with override_settings(TASKS=setting):
        scraped = scrape()
    backends = {dict(labels).get("backend") for _, labels in scraped}
    assert backends == {"default"}
