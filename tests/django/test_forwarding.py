"""``backend.forward()`` into an in-process target (Django's DummyBackend): what moves, what is
refused and stays READY, reruns, and ``get_result`` of an old id. The real targets (PostgreSQL,
Redis, with their workers and kill -9) are in tests/scaleout/."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from litetasks._django.compat import (
    FRAMEWORK,
    InvalidTask,
    InvalidTaskBackend,
    TaskResultStatus,
    task_backends,
)
from tests import feature_tasks, tasks
from tests.corruption import corrupt, raw_row

DUMMY = {"BACKEND": f"{FRAMEWORK}.backends.dummy.DummyBackend", "QUEUES": ["default", "emails"]}


@pytest.fixture
def two_backends(lite_settings: dict[str, Any]) -> Any:
    with override_settings(TASKS={**lite_settings, "target": DUMMY}):
        yield task_backends["default"], task_backends["target"]


def test_forward_moves_ready_tasks_with_their_arguments_and_leaves_refused_ones_ready(
    two_backends,
):
    source, target = two_backends
    later = timezone.now() + timedelta(hours=1)
    plain = tasks.add.enqueue(1, 2)
    deferred = tasks.echo.using(run_after=later, priority=5, queue_name="emails").enqueue("x", n=1)
    refused = tasks.add.using(queue_name="reports").enqueue(3, 4)  # target has no 'reports'

    report = source.forward("target")

    assert report.moved_count == 2
    assert [(job_id, reason) for job_id, _, reason in report.refused] == [
        (refused.id, "Queue 'reports' is not valid for backend.")
    ]
    moved = {r.args and tuple(r.args): r for r in target.results}
    assert moved[(1, 2)].task.queue_name == "default"
    on_target = moved[("x",)]
    assert (on_target.kwargs, on_target.task.priority) == ({"n": 1}, 5)
    assert on_target.task.run_after == later
    # Old ids answer with the target's result; the refused task is still READY here.
    assert source.get_result(deferred.id).id == on_target.id
    assert source.get_result(plain.id).id == moved[(1, 2)].id
    assert source.get_result(refused.id).status == TaskResultStatus.READY
    assert source.store.get(refused.id).state.value == "READY"


def test_forwarding_twice_moves_nothing_twice(two_backends):
    source, target = two_backends
    tasks.add.enqueue(1, 2)
    source.forward("target")

    again = source.forward("target")

    assert again.moved_count == 0
    assert len(target.results) == 1


def test_dry_run_says_what_would_move_and_moves_nothing(two_backends, tmp_path):
    source, target = two_backends
    tasks.add.enqueue(1, 2)
    tasks.add.using(queue_name="reports").enqueue(3, 4)
    feature_tasks.unique_by_arguments.enqueue(1)
    feature_tasks.flaky.enqueue(str(tmp_path), 0)

    report = source.forward("target", dry_run=True)

    assert report.moved == {
        ("tests.tasks.add", "default"): 1,
        ("tests.feature_tasks.unique_by_arguments", "default"): 1,
        ("tests.feature_tasks.flaky", "default"): 1,
    }
    assert report.not_carried == {
        "tests.feature_tasks.unique_by_arguments": {"unique"},
        "tests.feature_tasks.flaky": {"retries (max_attempts=3)"},
    }
    assert [reason for _, _, reason in report.refused] == [
        "Queue 'reports' is not valid for backend."
    ]
    assert target.results == []
    assert report.moved_count == 3


def test_forward_filters_by_queue_and_task(two_backends):
    source, target = two_backends
    tasks.add.enqueue(1, 2)
    tasks.echo.using(queue_name="emails").enqueue(5)

    assert source.forward("target", queues=["emails"]).moved_count == 1
    assert source.forward("target", tasks=["tests.tasks.noop"]).moved_count == 0
    assert [r.task.module_path for r in target.results] == ["tests.tasks.echo"]


def test_forwarding_to_itself_or_an_unknown_alias_is_refused(two_backends):
    source, _ = two_backends
    with pytest.raises(InvalidTaskBackend, match="to itself"):
        source.forward("default")
    with pytest.raises(InvalidTaskBackend):
        source.forward("nowhere")


def test_status_counts_forwarded_tasks(two_backends):
    from litetasks._cli.status import status_data

    source, _ = two_backends
    tasks.add.enqueue(1, 2)
    tasks.add.enqueue(3, 4)
    source.forward("target", batch=1)

    by_state = status_data(source)["queues"]["default"]
    assert (by_state["FORWARDED"], by_state["READY"]) == (2, 0)


def test_a_target_that_fails_gives_back_what_it_did_not_take(two_backends, monkeypatch):
    source, target = two_backends
    first, second = tasks.add.enqueue(1, 2), tasks.add.enqueue(3, 4)
    calls = []

    def enqueue(task: Any, args: Any, kwargs: Any) -> Any:
        calls.append(args)
        raise ConnectionError("target down")

    monkeypatch.setattr(target, "enqueue", enqueue)
    with pytest.raises(ConnectionError):
        source.forward("target")

    states = {source.store.get(r.id).state.value for r in (first, second)}
    assert calls == [(1, 2)]
    # The failed one is left under way (the next forward resumes it); the other is READY.
    assert source.store.get(second.id).state.value == "READY"
    assert states == {"FORWARDED", "READY"}
    # Under way, not on the target yet: its old id still answers, as READY.
    assert source.get_result(first.id).status == TaskResultStatus.READY
    monkeypatch.undo()
    assert source.forward("target").moved_count == 2
    assert sorted(tuple(r.args) for r in target.results) == [(1, 2), (3, 4)]


def test_after_the_switch_the_old_alias_forwards_tasks_now_bound_to_the_new_default(
    lite_settings, queue_path
):
    old = tasks.add.enqueue(1, 2)  # enqueued while litetasks was "default"
    switched = {"lite": lite_settings["default"], "default": DUMMY}
    with override_settings(TASKS=switched):
        lite, new_default = task_backends["lite"], task_backends["default"]

        report = lite.forward("default")

        assert (report.moved_count, report.refused) == (1, [])
        [moved] = new_default.results
        assert (moved.args, moved.backend) == ([1, 2], "default")
        assert lite.get_result(old.id).id == moved.id


def test_dry_run_names_what_a_target_without_deferred_runs_refuses(lite_settings):
    immediate = {"BACKEND": f"{FRAMEWORK}.backends.immediate.ImmediateBackend"}
    with override_settings(TASKS={**lite_settings, "now": immediate}):
        source = task_backends["default"]
        deferred = tasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 2)

        report = source.forward("now", dry_run=True)

    assert report.moved == {}
    assert report.refused == [
        (deferred.id, "tests.tasks.add", "Backend does not support run_after.")
    ]


# Values another program wrote that litetasks cannot read: text that is not UTF-8 (apsw raised
# UnicodeDecodeError and the whole forward stopped), a blob, JSON that does not parse.
UNREADABLE = [
    ("task_path", "CAST(x'ff' AS TEXT)"),
    ("args", "CAST(x'5bff5d' AS TEXT)"),
    ("job_id", "CAST(x'ff' AS TEXT)"),
    ("args", "x'5b5d'"),
    ("kwargs", "'{bad'"),
]


@pytest.mark.parametrize(("column", "value"), UNREADABLE)
def test_a_row_that_cannot_be_read_is_refused_untouched_and_the_others_move(
    two_backends, queue_path, column, value
):
    source, target = two_backends
    tasks.add.enqueue(1, 2)
    bad = tasks.add.enqueue(3, 4)
    tasks.add.enqueue(5, 6)
    seq = corrupt(queue_path, bad.id, column, value)
    before = raw_row(queue_path, seq)

    dry = source.forward("target", dry_run=True)
    report = source.forward("target", batch=1)

    for done in (dry, report):
        assert done.moved_count == 2
        [(_, _, reason)] = done.refused
        assert f"column {column!r} holds " in reason
        assert "Something other than litetasks wrote it" in reason
    assert sorted(tuple(r.args) for r in target.results) == [(1, 2), (5, 6)]
    assert raw_row(queue_path, seq) == before  # left as it was: READY, nothing lost
    assert source.forward("target").moved_count == 0


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("forwarded_to", "CAST(x'ff' AS TEXT)"),
        ("forwarded_id", "CAST(x'ff' AS TEXT)"),
        ("forwarded_to", "x'00'"),
        ("forwarded_at", "'yesterday'"),
    ],
)
def test_a_forwarded_row_that_cannot_be_read_is_a_clear_error_naming_the_column(
    two_backends, queue_path, column, value
):
    source, _ = two_backends
    result = tasks.add.enqueue(1, 2)
    assert source.forward("target").moved_count == 1
    corrupt(queue_path, result.id, column, value)

    with pytest.raises(InvalidTask) as raised:
        source.get_result(result.id)
    assert str(raised.value).startswith(f"Result {result.id!r} cannot be loaded: ")
    assert f"column {column!r} holds " in str(raised.value)
    assert "Something other than litetasks wrote it" in str(raised.value)
