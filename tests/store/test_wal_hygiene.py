"""WAL hygiene: idle checkpoints truncate the -wal file; a reader that blocks them is reported."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import apsw
import pytest

from litetasks._runtime.maintenance import Maintenance
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
