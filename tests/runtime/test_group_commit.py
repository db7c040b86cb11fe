"""Group commit: a worker writes many outcomes per transaction, yet none waits for long."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from litetasks._django.compat import TaskResultStatus
from litetasks._runtime.attempts import Done
from litetasks._runtime.groupcommit import (
    BACKSTOP_S,
    GROUP_MAX,
    GROUP_WINDOW_S,
    GroupCommit,
    Handed,
)
from litetasks._runtime.supervisor import build_pool
from tests import tasks
from tests.harness import wait_for
from tests.runtime.fakes import Clock, done


def test_outcomes_are_written_while_a_long_task_runs_behind_them(
    backend: Any, tmp_path: Path
) -> None:
    # One thread, a deep prefetch: ten quick tasks, a slow one, and eighty more queued behind
    # it. The quick tasks' outcomes must not wait for the slow task (nor for the executor to
    # run short of work): the group's time limit writes them.
    quick = [tasks.noop.enqueue() for _ in range(10)]
    marker = tmp_path / "slow.started"
    slow = tasks.write_pid_and_sleep.enqueue(str(marker), 3.0)
    behind = [tasks.noop.enqueue() for _ in range(80)]
    config = dataclasses.replace(backend.config.worker, threads=1, processes=1, prefetch=100)
    pool = build_pool(backend, config)
    runner = threading.Thread(target=pool.run, daemon=True)
    runner.start()
    try:
        wait_for(marker.exists, timeout_s=10, what="the slow task to start")
        started = time.monotonic()

        def quick_ones_recorded() -> bool:
            return all(
                backend.get_result(r.id).status == TaskResultStatus.SUCCESSFUL for r in quick
            )

        wait_for(quick_ones_recorded, timeout_s=2.5, interval_s=0.01, what="quick outcomes")
        assert time.monotonic() - started < 1.0
        assert backend.get_result(slow.id).status == TaskResultStatus.RUNNING
        # Claimed ahead, not run: the slow task is still in the way.
        assert {backend.get_result(r.id).status for r in behind} == {TaskResultStatus.RUNNING}
    finally:
        pool.stop(force=True)
        runner.join(10)
    assert not runner.is_alive()
    # Stopped mid-slow-task: the queued ones went back to READY, attempt not counted.
    for result in behind:
        stored = backend.get_result(result.id)
        assert (stored.status, stored.attempts) == (TaskResultStatus.READY, 0)


def test_an_executor_running_a_task_at_a_forced_stop_ends_once_the_task_returns(
    backend: Any, tmp_path: Path
) -> None:
    # A forced stop abandons the running task (it goes back to READY); its executor thread
    # must not then wait for ever for an outcome no one will record, holding its connection.
    marker = tmp_path / "slow.started"
    slow = tasks.write_pid_and_sleep.enqueue(str(marker), 1.0)
    config = dataclasses.replace(backend.config.worker, threads=1, processes=1)
    pool = build_pool(backend, config)
    before = set(threading.enumerate())
    runner = threading.Thread(target=pool.run, daemon=True)
    runner.start()
    wait_for(marker.exists, timeout_s=10, what="the slow task to start")
    pool.stop(force=True)
    runner.join(10)
    assert not runner.is_alive()
    executors = [
        thread
        for thread in threading.enumerate()
        if thread not in before and thread.name.startswith("litetasks-executor")
    ]
    assert executors, "the executor is still running the task"
    for thread in executors:
        thread.join(5)
    assert not [thread.name for thread in executors if thread.is_alive()]
    stored = backend.get_result(slow.id)
    assert (stored.status, stored.attempts) == (TaskResultStatus.READY, 0)


# -- the group's rules, alone, on a fake clock ----------------------------------------------


def _never_hungry(waiting: list[Done]) -> bool:
    return False


def test_an_outcome_an_executor_will_write_waits_the_group_window_and_no_longer() -> None:
    clock = Clock()
    group = GroupCommit(clock=clock)
    handed = group.add(done=done())
    assert handed == Handed(first=True, due=False)
    assert group.due_in(stopping=False, inline=True, hungry=_never_hungry) == pytest.approx(
        GROUP_WINDOW_S
    )
    clock.advance(GROUP_WINDOW_S / 2)
    assert group.due_in(stopping=False, inline=True, hungry=_never_hungry) == pytest.approx(
        GROUP_WINDOW_S / 2
    )
    clock.advance(GROUP_WINDOW_S / 2)
    assert group.due_in(stopping=False, inline=True, hungry=_never_hungry) == 0.0
    # The next outcome finds the group due: its executor writes the transaction.
    assert group.add(done=done("k")) == Handed(first=False, due=True)


def test_the_dispatcher_leaves_executors_outcomes_to_them_until_the_backstop() -> None:
    clock = Clock()
    group = GroupCommit(clock=clock)
    group.add(done=done())
    assert group.due_in(stopping=False, inline=False, hungry=_never_hungry) == pytest.approx(
        BACKSTOP_S
    )
    clock.advance(BACKSTOP_S)
    assert group.due_in(stopping=False, inline=False, hungry=_never_hungry) == 0.0


def test_a_coroutine_s_outcome_waits_only_the_group_window_for_the_dispatcher() -> None:
    clock = Clock()
    group = GroupCommit(clock=clock)
    group.add(done=done(coroutine=True))
    assert group.due_in(stopping=False, inline=False, hungry=_never_hungry) == pytest.approx(
        GROUP_WINDOW_S
    )


def test_a_full_group_is_written_at_once() -> None:
    group = GroupCommit(clock=Clock())
    for index in range(GROUP_MAX - 1):
        assert not group.add(done=done(str(index))).due
    assert group.add(done=done("last")).due
    assert group.due_in(stopping=False, inline=True, hungry=_never_hungry) == 0.0


def test_executors_short_of_work_make_a_transaction_due_unless_the_pool_stops() -> None:
    group = GroupCommit(clock=Clock())
    assert group.due_in(stopping=False, inline=False, hungry=_never_hungry) is None
    asked: list[list[Done]] = []

    def hungry(waiting: list[Done]) -> bool:
        asked.append(waiting)
        return True

    assert group.due_in(stopping=False, inline=False, hungry=hungry) == 0.0
    assert asked == [[]]
    assert group.due_in(stopping=True, inline=False, hungry=hungry) is None
    assert len(asked) == 1  # a stopping pool claims nothing


def test_a_stopping_pool_writes_waiting_outcomes_at_once() -> None:
    group = GroupCommit(clock=Clock())
    group.add(done=done())
    assert group.due_in(stopping=True, inline=False, hungry=_never_hungry) == 0.0


def test_a_job_to_put_back_is_due_at_once() -> None:
    group = GroupCommit(clock=Clock())
    assert group.add(returned="j1") == Handed(first=True, due=True)
    assert group.due_in(stopping=True, inline=False, hungry=_never_hungry) == 0.0
    assert group.count() == 1
    assert group.take() == ([], ["j1"])
    assert group.count() == 0


def test_what_could_not_be_written_is_kept_once_in_order_and_not_if_recorded() -> None:
    group = GroupCommit(clock=Clock())
    first, second, recorded = done("a"), done("b"), done("c")
    group.add(done=first)
    group.add(done=second)
    assert group.take() == ([first, second], [])
    later = done("d")
    group.add(done=later)
    recorded.recorded.set()
    group.give_back([first, second, recorded], ["j1"])
    group.give_back([first, second], ["j1"])  # the caller gives back again: idempotent
    assert group.take() == ([first, second, later], ["j1"])
