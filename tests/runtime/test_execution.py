"""Running tasks: ``litetasks.testing.drain()`` must give what Django's ``ImmediateBackend`` gives.

Each comparison runs the same fixture task twice: once through the queue file and the real
worker code (``drain``), once through ``ImmediateBackend`` (alias ``"immediate"``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from litetasks._django.backend import SQLiteBackend
from litetasks._django.compat import (
    FRAMEWORK,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from litetasks.testing import drain
from tests import tasks

IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
# The logger Django's (or the backport's) signal receivers write to.
FRAMEWORK_LOGGER = "django.tasks" if FRAMEWORK == "django.tasks" else "django_tasks"
QUEUES = ["default", "emails", "reports"]


@pytest.fixture
def backend(queue_path: Path) -> Iterator[SQLiteBackend]:
    """The litetasks backend as ``"default"`` and Django's ImmediateBackend as ``"immediate"``."""
    setting = {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "QUEUES": QUEUES,
            "OPTIONS": {"path": str(queue_path)},
        },
        "immediate": {"BACKEND": IMMEDIATE, "QUEUES": QUEUES},
    }
    with override_settings(TASKS=setting):
        yield task_backends["default"]


RunBoth = Callable[..., tuple[Any, Any]]


@pytest.fixture
def run_both(backend: SQLiteBackend) -> RunBoth:
    """Run ``task(*args, **kwargs)`` through drain() and through ImmediateBackend."""

    def run(task: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        lite = task.enqueue(*args, **kwargs)
        assert drain() == 1
        lite.refresh()
        immediate = task.using(backend="immediate").enqueue(*args, **kwargs)
        return lite, immediate

    return run


def observable(result: Any) -> dict[str, Any]:
    """What a user can see of a finished result, apart from ids and exact times."""
    return {
        "status": result.status,
        "is_finished": result.is_finished,
        "attempts": result.attempts,
        "worker_ids": len(result.worker_ids),
        "errors": [error.exception_class_path for error in result.errors],
        "return_value": (
            result.return_value if result.status == TaskResultStatus.SUCCESSFUL else "<failed>"
        ),
        "last_traceback_line": (
            result.errors[-1].traceback.rstrip("\n").splitlines()[-1] if result.errors else None
        ),
    }


def assert_times_ordered(result: Any) -> None:
    assert result.enqueued_at is not None
    assert result.started_at is not None
    assert result.last_attempted_at is not None
    assert result.finished_at is not None
    assert result.enqueued_at <= result.started_at <= result.last_attempted_at
    assert result.last_attempted_at <= result.finished_at


@contextlib.contextmanager
def connected(signal: Any, receiver: Callable[..., None]) -> Iterator[None]:
    signal.connect(receiver, weak=False)
    try:
        yield
    finally:
        signal.disconnect(receiver)


@contextlib.contextmanager
def signal_log() -> Iterator[list[tuple[str, type, str, TaskResultStatus]]]:
    """Record ``(signal, sender, result id, status at send time)`` for the three task signals."""
    calls: list[tuple[str, type, str, TaskResultStatus]] = []

    def recorder(name: str) -> Callable[..., None]:
        def receive(sender: type, task_result: Any, **kwargs: Any) -> None:
            calls.append((name, sender, task_result.id, task_result.status))

        return receive

    with contextlib.ExitStack() as stack:
        for name, signal in [
            ("enqueued", task_enqueued),
            ("started", task_started),
            ("finished", task_finished),
        ]:
            stack.enter_context(connected(signal, recorder(name)))
        yield calls


# -- outcomes, compared with ImmediateBackend --------------------------------------------------


def test_success_matches_immediate_backend(run_both: RunBoth) -> None:
    lite, immediate = run_both(tasks.add, 2, b=40)
    assert observable(lite) == observable(immediate)
    assert observable(lite) == {
        "status": TaskResultStatus.SUCCESSFUL,
        "is_finished": True,
        "attempts": 1,
        "worker_ids": 1,
        "errors": [],
        "return_value": 42,
        "last_traceback_line": None,
    }
    assert_times_ordered(lite)
    assert_times_ordered(immediate)
    assert lite.started_at == lite.last_attempted_at


def test_success_timestamps_are_aware_utc_and_recent(backend: SQLiteBackend) -> None:
    before = timezone.now()
    result = tasks.noop.enqueue()
    drain()
    result.refresh()
    after = timezone.now()
    for moment in (result.enqueued_at, result.started_at, result.finished_at):
        assert moment is not None
        assert moment.utcoffset() == timedelta(0)
        assert before <= moment <= after


def test_value_error_matches_immediate_backend(run_both: RunBoth) -> None:
    lite, immediate = run_both(tasks.fail_value_error, "the reason")
    assert observable(lite) == observable(immediate)
    assert observable(lite)["errors"] == ["builtins.ValueError"]
    assert observable(lite)["last_traceback_line"] == "ValueError: the reason"
    assert lite.errors[0].traceback.startswith("Traceback (most recent call last):")
    assert "raise ValueError(message)" in lite.errors[0].traceback
    assert lite.errors[0].exception_class is ValueError
    with pytest.raises(ValueError, match=r"^Task failed$"):
        _ = lite.return_value
    assert_times_ordered(lite)


def test_system_exit_in_a_task_fails_it_and_drain_goes_on(backend: SQLiteBackend) -> None:
    exiting = tasks.exit_task.enqueue()
    after = tasks.add.enqueue(1, 1)
    assert drain() == 2
    exiting.refresh()
    after.refresh()
    immediate = tasks.exit_task.using(backend="immediate").enqueue()
    assert observable(exiting) == observable(immediate)
    assert observable(exiting)["errors"] == ["builtins.SystemExit"]
    assert observable(exiting)["last_traceback_line"] == "SystemExit: 3"
    assert after.return_value == 2


def test_an_exception_whose_str_raises_is_recorded(run_both: RunBoth) -> None:
    lite, immediate = run_both(tasks.fail_bad_str)
    assert observable(lite) == observable(immediate)
    assert observable(lite)["errors"] == ["tests.tasks.BadStr"]
    assert "Traceback (most recent call last):" in lite.errors[0].traceback
    assert "raise BadStr" in lite.errors[0].traceback


def test_a_return_value_that_is_not_json_fails_the_task(run_both: RunBoth) -> None:
    lite, immediate = run_both(tasks.complex_return_value)
    assert observable(lite) == observable(immediate)
    assert observable(lite)["errors"] == ["builtins.TypeError"]
    assert (
        observable(lite)["last_traceback_line"] == "TypeError: Unsupported type: <class 'module'>"
    )


def test_a_return_value_with_a_non_str_key_fails_the_task(backend: SQLiteBackend) -> None:
    # ImmediateBackend would keep {1: "one"}; stored as JSON it would come back as {"1": "one"},
    # so litetasks refuses it rather than return a different value.
    result = tasks.int_key_return.enqueue()
    drain()
    result.refresh()
    assert observable(result)["errors"] == ["builtins.TypeError"]
    assert observable(result)["last_traceback_line"] == (
        "TypeError: Unsupported dict key 1 (int) in the return value: JSON object keys are "
        "strings, so it would come back as a different value. Use str keys."
    )


def test_keyboard_interrupt_propagates_out_of_drain_and_fails_the_row(
    backend: SQLiteBackend,
) -> None:
    interrupted = tasks.keyboard_interrupt.enqueue()
    waiting = tasks.noop.enqueue()
    with signal_log() as calls, pytest.raises(KeyboardInterrupt):
        drain()
    interrupted.refresh()
    waiting.refresh()
    # Like ImmediateBackend: not swallowed, and no task_finished for the interrupted task.
    assert [(name, status) for name, _, _, status in calls] == [
        ("started", TaskResultStatus.RUNNING)
    ]
    # Unlike ImmediateBackend (which leaves its in-memory result RUNNING), the row is settled
    # FAILED so that no RUNNING row outlives its worker.
    assert interrupted.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in interrupted.errors] == ["builtins.KeyboardInterrupt"]
    assert interrupted.attempts == 1
    assert interrupted.finished_at is not None
    assert waiting.status == TaskResultStatus.READY
    assert backend.store.get_workers() == []
    assert drain() == 1

    with pytest.raises(KeyboardInterrupt):
        tasks.keyboard_interrupt.using(backend="immediate").enqueue()


def test_an_interrupted_task_keeps_the_start_time_task_started_announced(
    backend: SQLiteBackend,
) -> None:
    announced: list[Any] = []
    with connected(task_started, lambda sender, task_result, **kw: announced.append(task_result)):
        result = tasks.keyboard_interrupt.enqueue()
        with pytest.raises(KeyboardInterrupt):
            drain()
    result.refresh()
    [running] = announced
    assert (result.started_at, result.last_attempted_at) == (
        running.started_at,
        running.last_attempted_at,
    )


def test_takes_context_gets_its_own_result_and_attempt_one(run_both: RunBoth) -> None:
    lite, immediate = run_both(tasks.with_context)
    assert lite.return_value == {"id": lite.id, "attempt": 1}
    assert immediate.return_value == {"id": immediate.id, "attempt": 1}


def test_an_async_task_runs_and_returns(run_both: RunBoth) -> None:
    lite, immediate = run_both(tasks.noop_async)
    assert observable(lite) == observable(immediate)
    assert lite.return_value == "async"


def test_get_result_after_a_run_equals_the_refreshed_result(backend: SQLiteBackend) -> None:
    result = tasks.echo.enqueue(1, [2], k={"v": None})
    drain()
    result.refresh()
    assert result.return_value == {"args": [1, [2]], "kwargs": {"k": {"v": None}}}
    assert backend.get_result(result.id) == result


# -- signals -----------------------------------------------------------------------------------


def test_signals_are_sent_once_each_in_order_like_immediate_backend(
    backend: SQLiteBackend,
) -> None:
    with signal_log() as lite_calls:
        lite = tasks.noop.enqueue()
        drain()
    with signal_log() as immediate_calls:
        immediate = tasks.noop.using(backend="immediate").enqueue()
    expected = [
        ("enqueued", TaskResultStatus.READY),
        ("started", TaskResultStatus.RUNNING),
        ("finished", TaskResultStatus.SUCCESSFUL),
    ]
    assert [(name, status) for name, _, _, status in lite_calls] == expected
    assert [(name, status) for name, _, _, status in immediate_calls] == expected
    assert {(sender, result_id) for _, sender, result_id, _ in lite_calls} == {
        (SQLiteBackend, lite.id)
    }
    assert {(sender, result_id) for _, sender, result_id, _ in immediate_calls} == {
        (type(task_backends["immediate"]), immediate.id)
    }


def test_task_started_carries_the_running_attempt(backend: SQLiteBackend) -> None:
    seen: list[Any] = []
    with connected(task_started, lambda sender, task_result, **kw: seen.append(task_result)):
        result = tasks.noop.enqueue()
        drain()
    [running] = seen
    result.refresh()
    assert running.status == TaskResultStatus.RUNNING
    assert running.started_at == running.last_attempted_at == result.started_at
    assert running.finished_at is None
    assert running.worker_ids == result.worker_ids
    assert running.attempts == 1


def test_task_finished_for_a_failure_is_sent_with_the_exception_active(
    backend: SQLiteBackend,
) -> None:
    active: list[BaseException | None] = []
    with connected(
        task_finished, lambda sender, task_result, **kw: active.append(sys.exc_info()[1])
    ):
        tasks.fail_value_error.enqueue("in the handler")
        tasks.noop.enqueue()
        assert drain() == 2
        tasks.fail_value_error.using(backend="immediate").enqueue("in the handler")
    lite_failure, lite_success, immediate_failure = active
    assert isinstance(lite_failure, ValueError)
    assert str(lite_failure) == "in the handler"
    assert lite_success is None
    assert type(immediate_failure) is type(lite_failure)


def test_a_task_finished_receiver_that_raises_does_not_stop_drain(
    backend: SQLiteBackend, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: type, task_result: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver is broken")

    with connected(task_finished, broken):
        first = tasks.add.enqueue(1, 2)
        second = tasks.add.enqueue(3, 4)
        assert drain() == 2
    first.refresh()
    second.refresh()
    assert (first.return_value, second.return_value) == (3, 7)
    assert any(
        "receiver is broken" in record.getMessage()
        or (record.exc_info and "receiver is broken" in str(record.exc_info[1]))
        for record in caplog.records
    )


# -- logging -----------------------------------------------------------------------------------


def _framework_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == FRAMEWORK_LOGGER or record.name.startswith(FRAMEWORK_LOGGER + ".")
    ]


def test_a_successful_run_logs_exactly_djangos_three_records(
    backend: SQLiteBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=FRAMEWORK_LOGGER)
    caplog.set_level(logging.DEBUG, logger="litetasks")
    result = tasks.noop.enqueue()
    drain()
    records = _framework_records(caplog)
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.DEBUG, f"Task id={result.id} path=tests.tasks.noop enqueued backend=default"),
        (logging.INFO, f"Task id={result.id} path=tests.tasks.noop state=RUNNING"),
        (logging.INFO, f"Task id={result.id} path=tests.tasks.noop state=SUCCESSFUL"),
    ]
    assert all(record.exc_info is None for record in records)
    assert [
        r for r in caplog.records if r.name.startswith("litetasks") and r.levelno >= logging.INFO
    ] == []

    caplog.clear()
    tasks.noop.using(backend="immediate").enqueue()
    assert [r.levelno for r in _framework_records(caplog)] == [
        logging.DEBUG,
        logging.INFO,
        logging.INFO,
    ]


def test_a_failed_run_logs_an_error_with_the_traceback(
    backend: SQLiteBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=FRAMEWORK_LOGGER)
    result = tasks.fail_value_error.enqueue("logged reason")
    drain()
    *_, finished = _framework_records(caplog)
    assert finished.levelno == logging.ERROR
    assert finished.getMessage() == (
        f"Task id={result.id} path=tests.tasks.fail_value_error state=FAILED"
    )
    assert finished.exc_info is not None
    assert isinstance(finished.exc_info[1], ValueError)
    assert "ValueError: logged reason" in caplog.text


# -- what drain() runs, and in which order -----------------------------------------------------


def _ran(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()]


def test_higher_priority_runs_first_and_fifo_within_a_priority(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    log = tmp_path / "ran.txt"
    for name, priority in [("a", 0), ("b", 10), ("c", 0), ("d", -5), ("e", 10), ("f", 100)]:
        tasks.append_line.using(priority=priority).enqueue(str(log), name)
    assert drain() == 6
    assert _ran(log) == ["f", "b", "e", "a", "c", "d"]


def test_a_past_run_after_orders_by_due_time_within_a_priority(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    log = tmp_path / "ran.txt"
    now = timezone.now()
    tasks.append_line.enqueue(str(log), "now")
    tasks.append_line.using(run_after=now - timedelta(hours=1)).enqueue(str(log), "hour-ago")
    tasks.append_line.using(run_after=now - timedelta(minutes=1)).enqueue(str(log), "minute-ago")
    assert drain() == 3
    assert _ran(log) == ["hour-ago", "minute-ago", "now"]


def test_drain_skips_a_task_whose_run_after_is_in_the_future(backend: SQLiteBackend) -> None:
    later = tasks.noop.using(run_after=timezone.now() + timedelta(hours=1)).enqueue()
    due = tasks.noop.using(run_after=timezone.now() - timedelta(seconds=1)).enqueue()
    assert drain() == 1
    later.refresh()
    due.refresh()
    assert due.status == TaskResultStatus.SUCCESSFUL
    assert later.status == TaskResultStatus.READY
    assert (later.started_at, later.worker_ids) == (None, [])
    assert drain() == 0


def test_drain_runs_only_the_queues_it_is_given(backend: SQLiteBackend) -> None:
    email = tasks.send_email.enqueue("ada@example.com")
    report = tasks.noop.using(queue_name="reports").enqueue()
    default = tasks.noop.enqueue()
    assert drain(queues=["emails"]) == 1
    for result in (email, report, default):
        result.refresh()
    assert [r.status for r in (email, report, default)] == [
        TaskResultStatus.SUCCESSFUL,
        TaskResultStatus.READY,
        TaskResultStatus.READY,
    ]
    assert drain(queues=["reports", "default"]) == 2
    assert drain() == 0


def test_drain_returns_zero_on_an_empty_queue(backend: SQLiteBackend) -> None:
    assert drain() == 0


def test_drain_refuses_a_backend_that_is_not_litetasks(backend: SQLiteBackend) -> None:
    from litetasks.exceptions import ConfigurationError

    with pytest.raises(
        ConfigurationError,
        match=r"^TASKS\['immediate'\] uses ImmediateBackend, not litetasks' SQLiteBackend; "
        r"drain\(\) only runs litetasks queues\.$",
    ):
        drain("immediate")
