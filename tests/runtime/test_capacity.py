"""Capacity: one job per idle executor plus some claimed ahead, and counts no thread sees
half-updated."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from litetasks._runtime.capacity import ASYNC_CONCURRENCY, PREFETCH_MAX, Capacity
from tests.runtime.fakes import done


def _capacity(threads: int = 4, prefetch: int = 0, max_tasks: int = 0) -> Capacity:
    return Capacity(threads=threads, prefetch=prefetch, max_tasks_per_child=max_tasks)


def test_a_new_pool_claims_one_job_per_executor_plus_its_prefetch() -> None:
    # Tasks are assumed slow (0.1 s) until measured: nothing more is claimed ahead.
    assert _capacity(threads=4).free_slots([]) == 4
    assert _capacity(threads=4, prefetch=3).free_slots([]) == 7


def test_claimed_jobs_take_slots_until_recorded_or_released() -> None:
    capacity = _capacity(threads=4)
    capacity.handed_out(sync=3, coroutines=0)
    assert (capacity.busy, capacity.claimed, capacity.free_slots([])) == (3, 3, 1)
    finished = [done("a"), done("b")]
    # Outcomes about to be recorded free their slots for the same transaction's claim.
    assert capacity.free_slots(finished) == 3
    capacity.recorded(finished)
    capacity.released(1)
    assert (capacity.busy, capacity.claimed, capacity.free_slots([])) == (0, 3, 4)


def test_short_tasks_are_claimed_ahead_up_to_the_window_and_the_maximum() -> None:
    capacity = _capacity(threads=2)
    capacity.handed_out(sync=50, coroutines=0)
    for _ in range(50):  # tasks of 1 ms: 5 ms of work is 5 per thread
        capacity.recorded([done(run_s=0.0009)])
    assert capacity.free_slots([]) == 2 + 5 * 2
    capacity.handed_out(sync=50, coroutines=0)
    for _ in range(50):  # tasks of 1 µs: as many as PREFETCH_MAX
        capacity.recorded([done(run_s=0.000001)])
    assert capacity.free_slots([]) == 2 + PREFETCH_MAX


def test_executors_run_short_at_half_of_what_is_claimed_ahead() -> None:
    capacity = _capacity(threads=1, prefetch=10)
    capacity.free_slots([])  # sizes the claim, and with it the low-water mark
    assert capacity.low_water == 5
    assert capacity.running_short(5)
    assert not capacity.running_short(6)
    assert capacity.hungry(5, [])
    assert not capacity.hungry(6, [])
    capacity.handed_out(sync=11, coroutines=0)
    assert not capacity.hungry(0, [])  # short of queued work, but no free slot


def test_coroutines_do_not_take_executor_slots_but_are_capped() -> None:
    capacity = _capacity(threads=1)
    capacity.handed_out(sync=0, coroutines=ASYNC_CONCURRENCY - 1)
    assert capacity.free_slots([]) == 1
    capacity.handed_out(sync=1, coroutines=0)
    assert capacity.free_slots([]) == 0
    capacity.recorded([done("s")])
    capacity.handed_out(sync=0, coroutines=1)
    assert capacity.free_slots([]) == 0  # ASYNC_CONCURRENCY coroutines in flight
    assert capacity.free_slots([done("c", coroutine=True)]) == 1


def test_a_recycling_pool_never_claims_past_its_limit() -> None:
    capacity = _capacity(threads=4, prefetch=10, max_tasks=6)
    assert capacity.free_slots([]) == 6
    capacity.handed_out(sync=5, coroutines=0)
    capacity.recorded([done(str(i)) for i in range(5)])
    assert capacity.free_slots([]) == 1


def test_nothing_runs_when_every_claimed_job_waits_to_be_written() -> None:
    capacity = _capacity()
    capacity.handed_out(sync=2, coroutines=0)
    assert not capacity.nothing_runs(1)
    assert capacity.nothing_runs(2)
    capacity.handed_out(sync=0, coroutines=1)
    assert not capacity.nothing_runs(3)  # a coroutine runs on the event loop


@pytest.fixture
def fast_switching() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave between almost any two bytecodes
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.usefixtures("fast_switching")
def test_no_thread_sees_the_counts_half_updated() -> None:
    # One executor and nothing claimed ahead: whether a coroutine is in flight or not, one
    # slot is free. A reader that saw busy and in-flight counts from different moments
    # (as the dispatcher did, reading them outside the writers' lock) would see 0 or 2.
    capacity = _capacity(threads=1)
    stop = threading.Event()

    def churn() -> None:
        finished = [done(coroutine=True)]
        while not stop.is_set():
            capacity.handed_out(sync=0, coroutines=1)
            capacity.recorded(finished)

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        seen = {capacity.free_slots([]) for _ in range(20_000)}
    finally:
        stop.set()
        writer.join()
    assert seen == {1}
