"""Pausing queues and periodic schedules (``Store.pausing``, pausing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from litetasks._store import pausing
from litetasks._store.records import NewJob
from litetasks._store.store import Store

from .test_store import FakeClock, claim_ids, new_job


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "tasks.sqlite3", clock=FakeClock()) as opened:
        yield opened


@pytest.fixture
def other(store: Store) -> Iterator[Store]:
    """A second connection to the same file, as another process's worker has."""
    with Store(store.path, clock=FakeClock()) as opened:
        yield opened


def enqueue_in(store: Store, queue: str, *ids: str) -> None:
    store.enqueue([new_job(job_id, queue_name=queue) for job_id in ids])


def test_pause_and_resume_say_whether_they_changed_anything(store: Store) -> None:
    assert store.pausing.paused_queues() == set()
    assert store.pausing.pause_queue("emails") is True
    assert store.pausing.pause_queue("emails") is False
    assert store.pausing.paused_queues() == {"emails"}
    assert store.pausing.resume_queue("emails") is True
    assert store.pausing.resume_queue("emails") is False
    assert store.pausing.paused_queues() == set()


def test_a_paused_queue_is_not_claimed_by_any_kind_of_claim(store: Store) -> None:
    enqueue_in(store, "emails", "e1", "e2")
    enqueue_in(store, "default", "d1")
    store.pausing.pause_queue("emails")
    assert claim_ids(store, limit=10) == ["d1"]  # every queue but the paused one
    enqueue_in(store, "default", "d2")
    assert claim_ids(store, queues=["emails"], limit=10) == []
    assert claim_ids(store, queues=["emails", "default"], limit=10) == ["d2"]
    store.pausing.resume_queue("emails")
    assert claim_ids(store, queues=["emails"], limit=10) == ["e1", "e2"]


def test_a_paused_queue_keeps_its_ready_tasks_out_of_next_due_at(store: Store) -> None:
    enqueue_in(store, "emails", "e1")
    store.pausing.pause_queue("emails")
    assert store.next_due_at() is None  # or an idle worker would poll without sleeping
    store.pausing.resume_queue("emails")
    assert store.next_due_at() is not None


def test_another_connection_sees_a_pause_within_the_refresh_interval(
    store: Store, other: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_in(store, "emails", "e1", "e2", "e3")
    assert claim_ids(other, limit=1) == ["e1"]  # other has read the paused queues: none
    store.pausing.pause_queue("emails")
    now = [pausing.time.monotonic()]
    monkeypatch.setattr(pausing.time, "monotonic", lambda: now[0])
    now[0] += pausing.REFRESH_S / 2
    assert claim_ids(other, limit=1) == ["e2"]  # its copy is younger than the interval
    now[0] += pausing.REFRESH_S
    assert claim_ids(other, limit=1) == []
    store.pausing.resume_queue("emails")
    now[0] += pausing.REFRESH_S
    assert claim_ids(other, limit=1) == ["e3"]


def test_pausing_survives_reopening_the_file(store: Store) -> None:
    store.pausing.pause_queue("emails")
    store.pausing.pause_schedule("nightly")
    with Store(store.path) as reopened:
        assert reopened.pausing.paused_queues() == {"emails"}
        assert reopened.pausing.paused_schedules() == {"nightly"}


def test_queues_and_schedules_are_paused_apart(store: Store) -> None:
    assert store.pausing.pause_schedule("emails") is True
    assert store.pausing.paused_queues() == set()
    assert store.pausing.paused_schedules() == {"emails"}
    assert store.pausing.pause_schedule("emails") is False
    assert store.pausing.resume_queue("emails") is False
    assert store.pausing.resume_schedule("emails") is True
    assert store.pausing.paused_schedules() == set()


def slot_job(job_id: str) -> NewJob:
    return new_job(job_id, queue_name="default")


def test_a_paused_schedule_enqueues_no_slot_and_resumes_at_the_next(store: Store) -> None:
    assert store.enqueue_slot("nightly", 1_000, slot_job("s1")) is not None
    store.pausing.pause_schedule("nightly")
    assert store.enqueue_slot("nightly", 2_000, slot_job("s2")) is None
    assert store.schedules()["nightly"] == (2_000, None)  # skipped, not caught up later
    assert store.enqueue_slot("nightly", 2_000, slot_job("s2")) is None
    store.pausing.resume_schedule("nightly")
    assert store.enqueue_slot("nightly", 3_000, slot_job("s3")) is not None
    assert claim_ids(store, limit=10) == ["s1", "s3"]


@pytest.mark.parametrize("name", ["", None, 3])
def test_a_name_that_is_not_a_string_is_refused(store: Store, name: object) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        store.pausing.pause_queue(name)  # type: ignore[arg-type]
