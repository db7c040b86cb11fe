"""WAL hygiene: idle checkpoints truncate the -wal file; a reader that blocks them is reported."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import apsw
import pytest

from litetasks._runtime.maintenance import Maintenance
from litetasks._store.connection import WAL_CHECKPOINT_PAGES
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
