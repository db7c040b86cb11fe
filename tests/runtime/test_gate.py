"""Executors take turns: one at a time for tasks that compute, all of them for tasks that wait."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from litetasks._django.compat import TaskResultStatus
from litetasks._runtime import gate as gate_module
from litetasks._runtime.gate import OVERDUE_S, Gate, Turn
from litetasks._runtime.supervisor import build_pool
from tests import tasks
from tests.harness import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _round(gate: Gate, clock: Clock, turns: list[Turn], used: float, wall_s: float = 0.001) -> None:
    """Every holder runs one task, all at once; together they use ``used`` of the GIL."""
    while gate.holders < gate.turns:
        turns.append(gate.enter())
    measured = [gate.started(turn) for turn in turns]
    clock.now += wall_s
    cpu_s = used * wall_s / len(turns)
    for turn, measure in zip(list(turns), measured, strict=True):
        if not gate.finished(turn, cpu_s if measure else None, wall_s):
            turns.remove(turn)
    clock.now += 0.0001


def test_tasks_that_compute_leave_one_turn_and_tasks_that_wait_get_them_all_back() -> None:
    clock = Clock()
    gate = Gate(4, clock=clock)
    turns: list[Turn] = []
    for _ in range(300):  # tasks that compute: together they keep the GIL busy
        _round(gate, clock, turns, used=1.0)
    assert (gate.turns, gate.holders) == (1, 1)
    for _ in range(300):  # tasks that mostly wait (2 % of their time on a core each)
        _round(gate, clock, turns, used=0.02 * len(turns))
    assert (gate.turns, gate.holders) == (4, 4)


def test_tasks_half_on_a_core_get_two_turns_most_of_the_time() -> None:
    clock = Clock()
    gate = Gate(4, clock=clock)
    turns: list[Turn] = []
    seen = []
    for _ in range(1000):
        _round(gate, clock, turns, used=min(1.0, 0.5 * max(len(turns), gate.turns)))
        seen.append(gate.turns)
    later = seen[500:]
    assert set(later) <= {1, 2}
    assert later.count(2) >= 0.8 * len(later)


def _one_turn() -> tuple[Gate, Turn]:
    """A gate with one turn (as after tasks that compute), and its holder."""
    gate = Gate(1)
    return gate, gate.enter()


def _enter_in_thread(gate: Gate) -> tuple[threading.Thread, list[float]]:
    entered: list[float] = []
    thread = threading.Thread(target=lambda: entered.append((gate.enter(), time.monotonic())[1]))
    thread.daemon = True
    thread.start()
    return thread, entered


def test_a_task_that_runs_long_lets_another_executor_in() -> None:
    gate, holder = _one_turn()
    gate.started(holder)
    started = time.monotonic()
    thread, entered = _enter_in_thread(gate)
    thread.join(5)
    assert entered, "the second executor never got in beside the long task"
    assert OVERDUE_S * 0.9 <= entered[0] - started < 1.0
    assert gate.holders == 2


def test_an_executor_waits_for_a_turn_while_the_holder_waits_for_work() -> None:
    # An idle holder takes the next job itself: nobody else gets in, and the waiter sleeps
    # until the holder starts a task (no polling while the pool is idle).
    gate, holder = _one_turn()
    gate.idle(holder)
    time.sleep(0.15)  # idle for longer than the pool counts as idle
    thread, entered = _enter_in_thread(gate)
    time.sleep(0.3)
    assert not entered
    gate.started(holder)  # ... and then runs long
    thread.join(5)
    assert entered and gate.holders == 2


def test_opening_the_gate_lets_every_waiter_in() -> None:
    gate, _ = _one_turn()
    waiters = [_enter_in_thread(gate) for _ in range(2)]
    time.sleep(0.05)
    gate.open()
    for thread, _ in waiters:
        thread.join(5)
    assert all(entered for _, entered in waiters)
    assert gate.holders == 3


def _run_until_finished(backend: Any, results: list[Any]) -> None:
    def finished() -> bool:
        return all(backend.get_result(r.id).status == TaskResultStatus.SUCCESSFUL for r in results)

    wait_for(finished, timeout_s=60, interval_s=0.02, what="the tasks to finish")


@contextlib.contextmanager
def _pool_of_four_threads(backend: Any) -> Iterator[None]:
    """An in-process pool of one process and four executor threads, running meanwhile."""
    config = dataclasses.replace(backend.config.worker, threads=4, processes=1)
    pool = build_pool(backend, config)
    runner = threading.Thread(target=pool.run, daemon=True)
    runner.start()
    try:
        yield
    finally:
        pool.stop()
        runner.join(10)
    assert not runner.is_alive()


def _share_alone(overlaps: list[int]) -> float:
    """The share of the tasks after the first 50 (the pool learns meanwhile) that ran alone."""
    later = overlaps[50:]
    return sum(1 for count in later if count == 1) / len(later)


@pytest.fixture
def overlaps() -> list[int]:
    tasks.OVERLAPS.clear()
    return tasks.OVERLAPS


def _computing_like_on_a_quiet_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tasks computing 8 ms: without turns, a thread waiting for the GIL takes it after the
    # interpreter's switch interval (5 ms) and starts its own task beside the first one.
    # Their thread CPU time reads as their wall time, as on a quiet machine: on a loaded one
    # the OS keeps threads off the CPU, which looks like waiting, and the pool rightly keeps
    # its turns open. Overdue admission is pushed out of the way for the same reason.
    monkeypatch.setattr(gate_module, "OVERDUE_S", 0.1)
    monkeypatch.setattr(time, "thread_time", time.perf_counter)


def test_a_pool_runs_computing_tasks_one_at_a_time_and_waiting_ones_side_by_side(
    backend: Any, overlaps: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _computing_like_on_a_quiet_machine(monkeypatch)
    with _pool_of_four_threads(backend):
        _run_until_finished(backend, [tasks.overlapping.enqueue(0.008) for _ in range(150)])
        # The pool learns within a few tasks; after that every task runs alone.
        assert _share_alone(overlaps) >= 0.9, overlaps
        # Tasks that sleep, measured for real: the turns open again.
        monkeypatch.undo()
        overlaps.clear()
        _run_until_finished(backend, [tasks.overlapping.enqueue(0.0, 0.05) for _ in range(40)])
        assert max(overlaps) == 4
        assert sum(1 for count in overlaps if count >= 3) >= 20, overlaps


def test_without_a_gil_every_executor_runs_at_once(
    backend: Any, overlaps: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A free-threaded Python running without its GIL (3.13t): threads compute in parallel, so
    # the pool hands out no turns. Computing tasks then overlap as they did before turns.
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    _computing_like_on_a_quiet_machine(monkeypatch)
    with _pool_of_four_threads(backend):
        _run_until_finished(backend, [tasks.overlapping.enqueue(0.008) for _ in range(150)])
    assert _share_alone(overlaps) <= 0.8, overlaps
