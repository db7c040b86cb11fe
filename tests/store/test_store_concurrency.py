"""Real multi-process contention on one queue file: no job is claimed twice, none is lost.

Four consumer processes claim and record in a loop while two producer processes enqueue, all on a
queue file none of them has created yet. Each process opens its own ``Store`` after the spawn.
"""

from __future__ import annotations

import multiprocessing
import random
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from litetasks._store.records import JobState, NewJob, Outcome
from litetasks._store.store import Store
from litetasks.exceptions import StoreError

pytestmark = pytest.mark.slow

QUEUES = ("default", "emails", "reports")
PRODUCERS = 2
JOBS_PER_PRODUCER = 1000
# Between them the consumers serve every queue, through all three claim statements.
CONSUMER_QUEUES: list[tuple[str, ...] | None] = [None, None, ("default", "emails"), ("reports",)]
MAX_STORE_ERRORS = 20
TIMEOUT_S = 60


def _consume(
    path: str, worker_id: str, queues: tuple[str, ...] | None, done: Any, out: Any
) -> None:
    """Claim and record until ``done`` is set and nothing is left; report what was claimed."""
    try:
        rng = random.Random(worker_id)
        claimed: list[str] = []
        errors: list[str] = []
        rejected = 0
        pending: list[Outcome] = []
        with Store(path) as store:
            while len(errors) < MAX_STORE_ERRORS:
                was_done = done.is_set()
                limit = rng.randint(1, 3)
                try:
                    if rng.random() < 0.5:
                        counted, jobs = store.record_and_claim(
                            pending, worker_id, queues=queues, limit=limit
                        )
                    else:
                        counted = store.record(pending) if pending else []
                        pending = []
                        jobs = store.claim(worker_id, queues=queues, limit=limit)
                except StoreError as exc:
                    errors.append(repr(exc))
                    continue
                rejected += counted.count(False)
                claimed += [job.job_id for job in jobs]
                now = store.now_us()
                pending = [
                    Outcome(
                        job_id=job.job_id,
                        worker_id=worker_id,
                        attempt=job.attempts,
                        started_at_us=now,
                        finished_at_us=now,
                        return_json="null",
                    )
                    for job in jobs
                ]
                if not jobs:
                    if was_done:
                        break
                    time.sleep(0.001)
        out.put(
            ("consumer", worker_id, {"claimed": claimed, "errors": errors, "rejected": rejected})
        )
    except BaseException:
        out.put(("crash", worker_id, traceback.format_exc()))


def _produce(path: str, prefix: str, count: int, out: Any) -> None:
    """Enqueue ``count`` jobs in batches of random size; report any error."""
    try:
        rng = random.Random(prefix)
        errors: list[str] = []
        enqueued = 0
        with Store(path) as store:
            while enqueued < count and len(errors) < MAX_STORE_ERRORS:
                size = min(rng.randint(1, 25), count - enqueued)
                batch = [
                    NewJob(
                        job_id=f"{prefix}-{enqueued + i}",
                        task_path="tests.tasks.noop",
                        queue_name=rng.choice(QUEUES),
                        priority=rng.randint(-3, 3),
                    )
                    for i in range(size)
                ]
                try:
                    store.enqueue(batch)
                except StoreError as exc:
                    errors.append(repr(exc))
                    continue
                enqueued += size
        out.put(("producer", prefix, {"enqueued": enqueued, "errors": errors}))
    except BaseException:
        out.put(("crash", prefix, traceback.format_exc()))


def _run(processes: list[Any], done: Any, out: Any) -> dict[str, tuple[str, Any]]:
    """Start ``processes``, set ``done`` once every producer reported, return every report."""
    reports: dict[str, tuple[str, Any]] = {}
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + TIMEOUT_S
        while len(reports) < len(processes):
            kind, name, payload = out.get(timeout=max(0.1, deadline - time.monotonic()))
            reports[name] = (kind, payload)
            if all(f"p{i}" in reports for i in range(PRODUCERS)):
                done.set()  # every producer has committed: an empty claim now means drained
        for process in processes:
            process.join(timeout=10)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
        out.close()
        out.join_thread()
    return reports


def test_processes_contending_for_one_file_run_every_job_exactly_once(tmp_path: Path):
    path = str(tmp_path / "tasks.sqlite3")
    context = multiprocessing.get_context("spawn")
    done = context.Event()
    out = context.Queue()
    consumers = [
        context.Process(target=_consume, args=(path, f"w{i}", queues, done, out))
        for i, queues in enumerate(CONSUMER_QUEUES)
    ]
    producers = [
        context.Process(target=_produce, args=(path, f"p{i}", JOBS_PER_PRODUCER, out))
        for i in range(PRODUCERS)
    ]
    processes = consumers + producers

    reports = _run(processes, done, out)

    crashes = {name: payload for name, (kind, payload) in reports.items() if kind == "crash"}
    assert not crashes, crashes
    assert [process.exitcode for process in processes] == [0] * len(processes)
    for i in range(PRODUCERS):
        assert reports[f"p{i}"][1] == {"enqueued": JOBS_PER_PRODUCER, "errors": []}

    claimed_by: dict[str, list[str]] = {}
    for i in range(len(CONSUMER_QUEUES)):
        report = reports[f"w{i}"][1]
        assert report["errors"] == []
        assert report["rejected"] == 0
        for job_id in report["claimed"]:
            claimed_by.setdefault(job_id, []).append(f"w{i}")
    twice = {job_id: owners for job_id, owners in claimed_by.items() if len(owners) > 1}
    assert not twice
    expected = {f"p{p}-{n}" for p in range(PRODUCERS) for n in range(JOBS_PER_PRODUCER)}
    assert set(claimed_by) == expected

    with Store(path) as store:
        assert sum(store.counts().values()) == len(expected)
        assert {state for _, state in store.counts()} == {JobState.SUCCESSFUL}
        for job_id, (owner,) in claimed_by.items():
            job = store.get(job_id)
            assert (job.state, job.attempts, job.worker_ids) == (
                JobState.SUCCESSFUL,
                1,
                (owner,),
            )
        assert store.integrity_check() == "ok"
