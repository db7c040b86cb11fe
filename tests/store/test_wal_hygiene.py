"""WAL hygiene: idle checkpoints truncate the -wal file; a reader that blocks them is reported."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import apsw
import pytest

from litetasks._runtime.maintenance import Maintenance
from litetasks._store.connection import (
    WAL_CHECKPOINT_PAGES,
    _WalCheckpoints,
)
from litetasks._store.records import NewJob
from litetasks._store.store import Store


def _fill(store: Store, count: int) -> None:
    store.enqueue(
        [
            NewJob(job_id=f"job-{store.now_us()}-{i}", task_path="tests.tasks.noop")
            for i in range(count)
        ]
    )


def _maintenance(backend: Any) -> Maintenance:
    return Maintenance(
        worker_id="w1",
        config=backend.config.worker,
        register=lambda store: None,
        recover=lambda store: None,
        supervisor_alive=lambda: True,
    )


def test_an_idle_checkpoint_truncates_the_wal(backend: Any, queue_path: Path) -> None:
    maintenance = _maintenance(backend)
    store = backend.store
    _fill(store, 500)
    wal = Path(f"{queue_path}-wal")
    assert wal.stat().st_size > 0
    maintenance.checkpoint(store)
    assert wal.stat().st_size == 0


def test_a_reader_that_blocks_the_checkpoint_is_reported(
    backend: Any, queue_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    maintenance = _maintenance(backend)
    store = backend.store
    _fill(store, 10)
    reader = apsw.Connection(str(queue_path))
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM jobs").fetchall()  # holds a snapshot open
    _fill(store, 200)
    with caplog.at_level(logging.WARNING, logger="litetasks._runtime.maintenance"):
        maintenance.checkpoint(store)
    assert any("checkpoint" in r.message and "blocked" in r.message for r in caplog.records)
    reader.execute("COMMIT")
    reader.close()
    caplog.clear()
    maintenance.checkpoint(store)
    assert not caplog.records
    assert Path(f"{queue_path}-wal").stat().st_size == 0


def test_producers_alone_keep_the_wal_bounded(tmp_path: Path) -> None:
    # No worker checkpoints: the commit that leaves the WAL past WAL_CHECKPOINT_PAGES does. (A
    # checkpoint after the writer's turn, so as not to hold the others, was tried: 8 producers
    # then checkpoint on every commit while the WAL cannot restart, 0.75x the rate.)
    path = tmp_path / "tasks.sqlite3"
    args = json.dumps(["x" * 1500])  # about a page a row
    with Store(path) as store:
        for batch in range(8):  # 16,000 rows: well past 10,000 pages
            jobs = [
                NewJob(job_id=f"{batch:04}{i:028}", task_path="tests.tasks.noop", args_json=args)
                for i in range(2000)
            ]
            store.enqueue(jobs)
        store.enqueue([NewJob(job_id="f" * 32, task_path="tests.tasks.noop")])
        other = apsw.Connection(str(path))
        try:
            _busy, frames, _done = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            other.close()

    assert frames < WAL_CHECKPOINT_PAGES


def test_a_producer_leaves_checkpoints_to_the_workers_until_the_wal_is_long(
    tmp_path: Path,
) -> None:
    # SQLite's default checkpoints at 1,000 pages, from the commit that reaches them; the
    # queue's connections wait for WAL_CHECKPOINT_PAGES (the workers checkpoint every second).
    path = tmp_path / "tasks.sqlite3"
    args = json.dumps(["x" * 1500])  # about a page a row
    with Store(path) as store:
        for i in range(3000):  # one commit each, as enqueue() makes them
            store.enqueue([NewJob(job_id=f"{i:032}", task_path="tests.tasks.noop", args_json=args)])
        settings = {
            name: store._db.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_size_limit", "cache_size", "temp_store")
        }
        other = apsw.Connection(str(path))
        try:
            _busy, frames, _done = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            other.close()

    assert settings == {
        "journal_size_limit": 64 * 1024 * 1024,
        "cache_size": -16384,
        "temp_store": 2,  # MEMORY
    }
    assert frames > 3000  # no checkpoint yet: the WAL holds every commit


class _Counting:
    """A connection that counts the checkpoints asked of it."""

    def __init__(self, connection: apsw.Connection) -> None:
        self.connection = connection
        self.checkpoints: list[int] = []
        self.pages = 0

    def wal_checkpoint(self, name: str, mode: int) -> tuple[int, int]:
        self.checkpoints.append(self.pages)
        result: tuple[int, int] = self.connection.wal_checkpoint(name, mode)
        return result


def test_a_wal_that_stays_long_is_checkpointed_once_a_step_not_at_every_commit(
    tmp_path: Path,
) -> None:
    # Other processes writing keep the WAL from starting over; SQLite's own rule then
    # checkpointed (two fdatasyncs) after every commit of every producer.
    with Store(tmp_path / "tasks.sqlite3") as store:
        hook = _WalCheckpoints()
        counting = _Counting(store._db)
        lengths = [*range(9_990, 12_600, 4), 300, *range(9_996, 10_010, 4)]
        for pages in lengths:  # the WAL's length after each commit, as SQLite passes it
            counting.pages = pages
            assert hook(counting, "main", pages) == apsw.SQLITE_OK  # type: ignore[arg-type]

    # At the limit, then after each WAL_CHECKPOINT_STEP more pages; after the WAL started over
    # (300 pages), at the limit again.
    assert counting.checkpoints == [10_002, 11_002, 12_002, 10_000]
