"""WAL hygiene: idle checkpoints truncate the -wal file; a reader that blocks them is reported."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import apsw
import pytest

from litetasks._runtime.maintenance import Maintenance
from litetasks._store.records import NewJob
from litetasks._store.sharing import (
    WAL_CHECKPOINT_PAGES,
    WAL_CHECKPOINT_STEP,
    _WalCheckpoints,
)
from litetasks._store.store import Store


def _fill(store: Store, count: int) -> None:
    store.enqueue(
        [
            NewJob(job_id=f"job-{store.now_us()}-{i}", task_path="tests.tasks.noop")
            for i in range(count)
        ]
    )


def _wal_frames(path: Path) -> int:
    """The WAL's length in frames since it last started over (a passive checkpoint says)."""
    other = apsw.Connection(str(path))
    try:
        _busy, frames, _done = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        other.close()
    return int(frames)


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
        frames = _wal_frames(path)

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
        frames = _wal_frames(path)

    assert settings == {
        "journal_size_limit": 64 * 1024 * 1024,
        "cache_size": -16384,
        "temp_store": 2,  # MEMORY
    }
    assert frames > 3000  # no checkpoint yet: the WAL holds every commit


class _Counting:
    """A connection that counts the checkpoints asked of it, by mode."""

    def __init__(self, connection: apsw.Connection) -> None:
        self.connection = connection
        self.checkpoints: list[tuple[int, int]] = []
        self.pages = 0

    def wal_checkpoint(self, name: str, mode: int) -> tuple[int, int]:
        self.checkpoints.append((self.pages, mode))
        result: tuple[int, int] = self.connection.wal_checkpoint(name, mode)
        return result

    def set_busy_handler(self, handler: object) -> None:
        self.connection.set_busy_handler(handler)


def test_a_wal_that_stays_long_is_checkpointed_once_a_step_not_at_every_commit(
    tmp_path: Path,
) -> None:
    # Other processes writing keep the WAL from starting over; SQLite's own rule then
    # checkpointed (two fdatasyncs) after every commit of every producer.
    with Store(tmp_path / "tasks.sqlite3") as store:
        hook = _WalCheckpoints(5000)
        counting = _Counting(store._db)
        lengths = [*range(9_990, 12_600, 4), 300, *range(9_996, 10_010, 4)]
        for pages in lengths:  # the WAL's length after each commit, as SQLite passes it
            counting.pages = pages
            assert hook(counting, "main", pages) == apsw.SQLITE_OK  # type: ignore[arg-type]

    # At the limit, then after each WAL_CHECKPOINT_STEP more pages; after the WAL started over
    # (300 pages), at the limit again.
    # Each a passive checkpoint, then a RESTART one.
    passive, restart = apsw.SQLITE_CHECKPOINT_PASSIVE, apsw.SQLITE_CHECKPOINT_RESTART
    assert counting.checkpoints == [
        (pages, mode) for pages in (10_002, 11_002, 12_002, 10_000) for mode in (passive, restart)
    ]


# A producer process: enqueue one job per call until it has made COUNT, with some other work
# between calls, as a web process has (a tight loop of enqueues alone let the WAL start over).
_PRODUCER = """
import json, sys
from pathlib import Path
from litetasks._store.records import NewJob
from litetasks._store.store import Store
path, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
args = json.dumps([1, "a short string", {"key": "value"}])  # a site's small arguments
with Store(path) as store:
    sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
    for i in range(count):
        job = NewJob(job_id=f"{name}{i:030}", task_path="tests.tasks.noop", args_json=args)
        store.enqueue([job])
        for _ in range(1000):  # about 20 µs
            pass
"""


def _start_producers(path: Path, count: int, processes: int) -> list[subprocess.Popen[str]]:
    """Start ``processes`` producers of ``count`` jobs each into ``path``, all at once."""
    producers = [
        subprocess.Popen(
            [sys.executable, "-c", _PRODUCER, str(path), f"p{index}", str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(processes)
    ]
    for producer in producers:
        assert producer.stdout is not None and producer.stdout.readline() == "ready\n"
    for producer in producers:
        assert producer.stdin is not None
        producer.stdin.write("go\n")
        producer.stdin.close()
    return producers


def _finish(producers: list[subprocess.Popen[str]]) -> None:
    for producer in producers:
        assert producer.wait(120) == 0
        assert producer.stdout is not None
        producer.stdout.close()


def test_producers_writing_at_once_keep_the_wal_bounded(tmp_path: Path) -> None:
    # The WAL starts over only at a commit that begins once every frame in it was copied into
    # the file; while other processes keep committing, a passive checkpoint never gets there
    # (8 producers and no worker: a 1.8 GB -wal beside a 65 MB queue file).
    path = tmp_path / "tasks.sqlite3"
    keeper = Store(path)  # open throughout: the last producer to close leaves the -wal as it is
    keeper.counts()
    count = 4000  # 8 x 4,000 commits of about 4 pages each: over 10 times the limit
    _finish(_start_producers(path, count, 8))

    wal_bytes = Path(f"{path}-wal").stat().st_size
    frames = _wal_frames(path)
    with keeper:
        assert keeper._db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 8 * count
    assert frames < WAL_CHECKPOINT_PAGES + 4 * WAL_CHECKPOINT_STEP
    assert wal_bytes < 2 * WAL_CHECKPOINT_PAGES * 4096


def test_a_workers_checkpoint_starts_the_wal_over_while_others_keep_writing(
    backend: Any, queue_path: Path
) -> None:
    # Producers commit all the time, never reaching WAL_CHECKPOINT_PAGES between two of the
    # pool's checkpoints; those must still let the WAL start over while the producers write.
    maintenance = _maintenance(backend)
    store = backend.store
    _fill(store, 1)
    producers = _start_producers(queue_path, 6000, 2)
    lengths = []  # the WAL's length before and after each checkpoint, while both write
    try:
        while all(producer.poll() is None for producer in producers):
            before = _wal_frames(queue_path)
            maintenance.wrote()
            maintenance.tick(store)
            lengths.append((before, _wal_frames(queue_path)))
            time.sleep(0.02)
    finally:
        _finish(producers)

    assert len(lengths) >= 5
    assert any(after < before for before, after in lengths), lengths
