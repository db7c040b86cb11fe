"""The queue file moved, deleted or replaced under a producer: nothing is acknowledged into a
file no worker will read (see ``litetasks/_store/producer.py`` for what SQLite does then).

A producer checks the queue file after every commit and its -wal and -shm every 0.1 s. Jobs
written into a file that is no longer at the path are taken back from it and written into the
file now there, or refused with a clear ``StoreError`` when no file can be opened safely there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from litetasks._django.backend import SQLiteBackend
from litetasks._store import producer
from litetasks._store.enqueueing import new_job_id
from litetasks._store.records import JobState, NewJob
from litetasks._store.store import Store
from litetasks.exceptions import JobNotFound, StoreError
from tests import tasks
from tests.harness import (
    QUICK_STOP,
    REPO,
    Pool,
    Producers,
    Started,
    run_cli,
    start_run,
    subprocess_env,
    wait_for,
)

SUFFIXES = ("", "-wal", "-shm")


@pytest.fixture(autouse=True)
def no_refusals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with a process that refuses no queue file. The stores it abandons (a
    real process keeps them open until it ends) are closed after the test."""
    abandoned: list[Store] = []
    monkeypatch.setattr(producer, "_refused", {})
    monkeypatch.setattr(producer, "_abandoned", abandoned)
    yield
    for store in abandoned:
        store.close()


@pytest.fixture
def witness(backend: SQLiteBackend, queue_path: Path) -> Iterator[Store]:
    """A connection opened before anything happens to the file: it sees the old file after."""
    tasks.noop.enqueue()  # the producer's own store is open too
    with Store(queue_path) as store:
        yield store


def move(queue_path: Path, target: Path, suffixes: tuple[str, ...] = ("",)) -> None:
    for suffix in suffixes:
        os.rename(f"{queue_path}{suffix}", f"{target}{suffix}")


def jobs_in(store: Store) -> int:
    return sum(store.counts().values())


def test_sqlite_goes_on_writing_a_moved_file_in_wal_mode_and_only_has_moved_tells(
    queue_path: Path,
) -> None:
    """What the design rests on (SQLite 3.54): no SQLITE_READONLY_DBMOVED in WAL mode."""
    with Store(queue_path) as store:
        store.enqueue([NewJob(job_id=new_job_id(), task_path="tests.tasks.noop")])
        assert not store.has_moved()
        move(queue_path, queue_path.with_name("moved.sqlite3"))
        store.enqueue([NewJob(job_id=new_job_id(), task_path="tests.tasks.noop")])  # no error
        assert store.has_moved()
        assert store.replaced_files() == ["queue file"]  # the -wal and -shm are still its own
        assert jobs_in(store) == 2


def test_an_enqueue_after_the_file_was_moved_away_alone_is_taken_back_and_refused(
    backend: SQLiteBackend, queue_path: Path, witness: Store
) -> None:
    before = jobs_in(witness)
    move(queue_path, queue_path.with_name("moved.sqlite3"))

    with pytest.raises(StoreError) as caught:
        tasks.noop.enqueue()

    message = str(caught.value)
    wal, shm = (f"{queue_path}{suffix}" for suffix in ("-wal", "-shm"))
    assert message.startswith(
        f"The queue file {str(queue_path)!r} was moved, deleted or replaced while 1 task(s) "
        "were enqueued; they were taken back from the old file and not enqueued: The queue file "
        f"{str(queue_path)!r} is missing, but {wal!r} and {shm!r} are still there: it was moved "
        "or deleted while in use"
    ), message
    assert "stop every process that uses the queue, then delete" in message
    assert jobs_in(witness) == before  # taken back from the old file
    assert not queue_path.exists()  # no new file beside the old -wal and -shm


@pytest.mark.parametrize("how", ["deleted", "moved"])
def test_an_enqueue_after_the_file_and_its_wal_and_shm_went_goes_into_the_new_file(
    backend: SQLiteBackend,
    queue_path: Path,
    witness: Store,
    how: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = jobs_in(witness)
    if how == "moved":
        move(queue_path, queue_path.with_name("moved.sqlite3"), SUFFIXES)
    else:
        for suffix in SUFFIXES:
            Path(f"{queue_path}{suffix}").unlink()

    with caplog.at_level(logging.ERROR, logger="litetasks._store.producer"):
        result = tasks.noop.enqueue()

    assert jobs_in(witness) == before  # not in the old file, which no worker reads
    with Store(queue_path) as live:
        assert live.get(result.id).state == JobState.READY
        assert jobs_in(live) == 1
    assert backend.get_result(result.id).status == "READY"
    [record] = caplog.records
    assert record.getMessage() == (
        f"The queue file {queue_path} was moved, deleted or replaced while this process used "
        "it; enqueueing into the file now at that path"
    )


def test_enqueue_many_into_a_replaced_file_puts_every_task_into_the_new_one(
    backend: SQLiteBackend, queue_path: Path, witness: Store
) -> None:
    from litetasks import enqueue_many

    for suffix in SUFFIXES:
        Path(f"{queue_path}{suffix}").unlink()
    results = enqueue_many(tasks.add, [(n, n) for n in range(5)])
    with Store(queue_path) as live:
        assert sorted(live.get(r.id).job_id for r in results) == sorted(r.id for r in results)
    for result in results:
        with pytest.raises(JobNotFound):
            witness.get(result.id)


def test_a_unique_task_enqueued_into_a_replaced_file_goes_into_the_new_one_once(
    backend: SQLiteBackend, queue_path: Path, witness: Store
) -> None:
    from tests import feature_tasks

    for suffix in SUFFIXES:
        Path(f"{queue_path}{suffix}").unlink()
    first = feature_tasks.unique_by_arguments.enqueue(1)
    twin = feature_tasks.unique_by_arguments.enqueue(1)

    assert twin.id == first.id
    with pytest.raises(JobNotFound):
        witness.get(first.id)
    with Store(queue_path) as live:
        assert live.get(first.id).state == JobState.READY
        assert jobs_in(live) == 1


def test_withdraw_takes_back_ready_jobs_only(queue_path: Path) -> None:
    with Store(queue_path) as store:
        ids = [new_job_id() for _ in range(3)]
        store.enqueue([NewJob(job_id=job_id, task_path="tests.tasks.noop") for job_id in ids])
        [taken] = store.claim("w1")
        assert store.withdraw([*ids, "no-such-id"]) == [i for i in ids if i != taken.job_id]
        assert store.get(taken.job_id).state == JobState.RUNNING
        assert jobs_in(store) == 1


def test_a_deleted_wal_stops_this_process_enqueueing_with_a_clear_error(
    backend: SQLiteBackend, queue_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer, "COMPANION_CHECK_S", 0.0)  # look at the -wal at every commit
    tasks.noop.enqueue()
    Path(f"{queue_path}-wal").unlink()

    with pytest.raises(StoreError) as noticed:
        tasks.noop.enqueue()
    with pytest.raises(StoreError) as refused:
        tasks.noop.enqueue()

    said = (
        f"The -wal of the queue file {str(queue_path)!r} was deleted or replaced while this "
        "process had the queue open, so this process enqueues nothing more into it: its "
        "commits could be lost, or overwrite those of processes that opened the queue since. "
        "Restart this process and every other that uses the queue; see 'When the queue file is "
        "damaged' in the README."
    )
    assert str(noticed.value).startswith(f"{said} This call's 1 task(s) may still run: they ")
    assert str(refused.value) == said


def test_a_process_opening_the_queue_after_its_wal_was_deleted_gets_a_clear_error(
    queue_path: Path,
) -> None:
    with Store(queue_path) as old:
        old.enqueue([NewJob(job_id=new_job_id(), task_path="tests.tasks.noop")])
        Path(f"{queue_path}-wal").unlink()
        with pytest.raises(StoreError) as caught:
            Store(queue_path)
    assert str(caught.value) == (
        f"The queue file {str(queue_path)!r} or its -wal was deleted, truncated or replaced "
        "while other processes had it open: SQLite reads less than the WAL index (-shm) "
        "promises, and nothing was written. Stop every process that uses the queue (web "
        "processes too), then start them again; see 'When the queue file is damaged' in the "
        "README."
    )


@pytest.mark.parametrize("left", [("-wal", "-shm"), ("-shm",)])
def test_no_queue_file_is_created_beside_the_wal_or_shm_of_a_missing_one(
    queue_path: Path, left: tuple[str, ...]
) -> None:
    for suffix in left:
        Path(f"{queue_path}{suffix}").write_bytes(b"")
    with pytest.raises(StoreError) as caught:
        Store(queue_path)
    assert str(caught.value).startswith(f"The queue file {str(queue_path)!r} is missing, but ")
    assert "it was moved or deleted while in use" in str(caught.value)
    assert not queue_path.exists()


# -- with real producer processes and a running pool -------------------------------------------


def saved_copy(line: str) -> str:
    """The saved copy a supervisor's last line names, and its merge command must name too."""
    saved = line.split(" tasks it held as '")[1].split("'", maxsplit=1)[0]
    assert f"run `litetasks merge {saved}`" in line, line
    return saved


def follow_with_merge(pool: Pool, saved: str) -> Started:
    """Start litetasks again, then merge the saved copy: the procedure the supervisor gave."""
    again = start_run(pool)
    env = subprocess_env(pool.root, settings="pool_settings", pythonpath=(REPO, pool.root))
    merged = run_cli("merge", saved, cwd=pool.root, env=env)
    assert merged.returncode == 0, merged.stderr
    print(f"\n[moved] {merged.stdout.strip()}")
    return again


def account(pool: Pool, producers: Producers) -> None:
    """Every acknowledged task is in the live file and ran once; say how many were missing."""
    acked = producers.acknowledged()
    path = pool.root / "tasks.sqlite3"
    with Store(path) as live:

        def finished() -> bool:
            counts = live.counts()
            return not any(n for (_, state), n in counts.items() if not state.is_finished)

        wait_for(finished, timeout_s=60, what="every task to finish")
        missing = []
        for job_id in acked:
            try:
                live.get(job_id)
            except JobNotFound:
                missing.append(job_id)
        assert live.integrity_check() == "ok"
    runs = producers.runs()
    twice = [label for label, n in runs.items() if n > 1]
    never = [label for label in acked.values() if not runs[label]]
    print(
        f"\n[moved] acknowledged {len(acked)}, missing from the live file {len(missing)}, "
        f"ran twice {len(twice)}, never ran {len(never)}"
    )
    assert (missing, twice, never) == ([], [], [])


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["moved", "deleted"])
def test_no_acknowledged_task_is_lost_when_the_queue_file_goes_under_producers_and_a_pool(
    open_pool: Callable[..., Pool], damage: str
) -> None:
    pool = open_pool(**QUICK_STOP)
    path = pool.root / "tasks.sqlite3"
    supervisor = start_run(pool)
    supervisor.wait_for_line("Starting supervisor", timeout_s=30)
    producers = Producers(pool, 2)
    producers.wait_for(300)

    if damage == "moved":
        os.rename(path, pool.root / "moved.sqlite3")  # its -wal and -shm stay at the path
    else:
        path.unlink()
    assert supervisor.wait(timeout_s=30) == 1, supervisor.output
    [line] = [line for line in supervisor.output.splitlines() if "litetasks stopped" in line]
    assert "Start litetasks again, then run `litetasks merge" in line, line
    assert "deleted the old file's -wal and -shm at that path" in line, line
    acked_then = len(producers.acknowledged())
    producers.wait_for(acked_then + 300)  # into the new queue file at the path
    said = producers.finish()

    follow_with_merge(pool, saved_copy(line))
    account(pool, producers)
    print(f"[moved] {damage}: {line}\n{said}")


@pytest.mark.slow
def test_a_wal_deleted_under_a_running_pool_stops_it_and_no_acknowledged_task_is_lost(
    open_pool: Callable[..., Pool],
) -> None:
    pool = open_pool(**QUICK_STOP)
    path = pool.root / "tasks.sqlite3"
    supervisor = start_run(pool)
    supervisor.wait_for_line("Starting supervisor", timeout_s=30)
    producers = Producers(pool, 2)
    producers.wait_for(300)

    Path(f"{path}-wal").unlink()
    assert supervisor.wait(timeout_s=30) == 1, supervisor.output
    [line] = [line for line in supervisor.output.splitlines() if "litetasks stopped" in line]
    assert f"The -wal of the queue file {str(path)!r} was deleted or replaced while in use." in line
    assert (
        "Stop every process that uses the queue (web processes too), start litetasks again" in line
    )
    said = producers.finish()  # stop every process that uses the queue
    assert said.count("refused: The -wal of the queue file") == 2, said

    follow_with_merge(pool, saved_copy(line))
    account(pool, producers)
    print(f"[moved] -wal deleted: {line}\n{said}")
