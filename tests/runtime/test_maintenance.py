"""The maintenance thread's rounds, one at a time on a fake clock: heartbeats, recovery,
checkpoints, back-off, and stopping with the supervisor."""

from __future__ import annotations

from pathlib import Path

from litetasks._runtime.maintenance import Maintenance
from litetasks._store.config import WorkerConfig
from litetasks.exceptions import StoreError
from tests.runtime.fakes import Clock


class FakeStore:
    """Records what maintenance asked of the queue file."""

    def __init__(self) -> None:
        self.path = Path("tasks.sqlite3")
        self.calls: list[str] = []
        self.known = True  # whether heartbeats find the worker registered
        self.failing: StoreError | None = None

    def heartbeat(self, worker_id: str) -> bool:
        self.calls.append("heartbeat")
        if self.failing is not None:
            raise self.failing
        return self.known

    def checkpoint(self) -> tuple[int, int]:
        self.calls.append("checkpoint")
        return 10, 10

    def checkpoint_restart(self) -> None:
        self.calls.append("passive")


class Harness:
    def __init__(self, *, heartbeat_s: float = 1.0, lease_s: float = 8.0) -> None:
        self.clock = Clock()
        self.store = FakeStore()
        self.supervisor_alive = True
        config = WorkerConfig(heartbeat_s=heartbeat_s, lease_s=lease_s, results_ttl_s=None)
        self.maintenance = Maintenance(
            worker_id="w1",
            config=config,
            register=lambda store: self.store.calls.append("register"),
            recover=lambda store: self.store.calls.append("recover"),
            supervisor_alive=lambda: self.supervisor_alive,
            clock=self.clock,
        )

    def tick_at(self, now: float) -> list[str]:
        """One round at ``now``; what it asked of the store."""
        self.clock.now = now
        self.store.calls.clear()
        assert self.maintenance.tick(self.store)  # type: ignore[arg-type]
        return list(self.store.calls)


def test_a_heartbeat_every_heartbeat_s_not_every_round() -> None:
    harness = Harness(heartbeat_s=1.0)
    assert harness.tick_at(0.0) == ["heartbeat"]
    assert harness.tick_at(0.5) == []
    assert harness.tick_at(0.99) == []
    assert harness.tick_at(1.0) == ["heartbeat"]


def test_a_worker_declared_lost_registers_again() -> None:
    harness = Harness()
    harness.store.known = False
    assert harness.tick_at(0.0) == ["heartbeat", "register"]


def test_lost_workers_are_recovered_every_quarter_lease() -> None:
    harness = Harness(heartbeat_s=1.0, lease_s=8.0)
    assert [harness.tick_at(float(t)) for t in range(5)] == [
        ["heartbeat"],
        ["heartbeat"],
        ["heartbeat", "recover"],
        ["heartbeat"],
        ["heartbeat", "recover"],
    ]


def test_new_outcomes_get_a_passive_checkpoint_and_a_full_one_once_the_pool_is_idle() -> None:
    harness = Harness(heartbeat_s=1.0, lease_s=100.0)
    maintenance = harness.maintenance
    harness.tick_at(0.0)
    maintenance.wrote()
    assert harness.tick_at(0.5) == ["passive"]  # between heartbeats too
    assert harness.tick_at(0.6) == []  # once per batch of outcomes
    assert harness.tick_at(1.0) == ["heartbeat"]  # not idle: no full checkpoint
    maintenance.idle()
    assert harness.tick_at(2.0) == ["heartbeat", "checkpoint"]
    maintenance.idle()
    assert harness.tick_at(3.0) == ["heartbeat"]  # nothing written since
    maintenance.idle()  # idle before the work: still owed a checkpoint after it
    maintenance.wrote()
    assert harness.tick_at(4.0) == ["passive", "heartbeat", "checkpoint"]


def test_a_failing_queue_file_backs_off_the_heartbeat_and_recovers() -> None:
    harness = Harness(heartbeat_s=0.1, lease_s=100.0)
    harness.store.failing = StoreError("disk I/O error")
    assert harness.tick_at(0.0) == ["heartbeat"]
    assert harness.tick_at(0.2) == []  # backs off 0.5 s, not heartbeat_s
    assert harness.tick_at(0.5) == ["heartbeat"]
    assert harness.tick_at(1.0) == []  # then 1 s
    harness.store.failing = None
    assert harness.tick_at(1.5) == ["heartbeat"]
    assert harness.tick_at(1.6) == ["heartbeat"]  # every heartbeat_s again


def test_the_pool_stops_when_its_supervisor_is_gone() -> None:
    harness = Harness()
    harness.supervisor_alive = False
    harness.maintenance.wrote()
    assert not harness.maintenance.tick(harness.store)  # type: ignore[arg-type]
    assert harness.store.calls == []
    stopped: list[bool] = []
    waits: list[float] = []

    def wait_for_stop(seconds: float) -> bool:
        waits.append(seconds)
        return False

    harness.maintenance.run(
        harness.store,  # type: ignore[arg-type]
        wait_for_stop,
        lambda: stopped.append(True),
    )
    assert (waits, stopped) == ([1.0], [True])


def test_run_ends_when_the_pool_stops() -> None:
    harness = Harness(heartbeat_s=2.0, lease_s=8.0)
    answers = iter([False, False, True])
    harness.maintenance.run(
        harness.store,  # type: ignore[arg-type]
        lambda seconds: next(answers),
        lambda: None,
    )
    assert harness.store.calls == ["heartbeat"]  # the second round is between heartbeats
