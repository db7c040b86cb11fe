"""A Hypothesis state machine over the real ``Store``, checked against a plain-dict model.

The model mirrors DESIGN.md's state machine: READY -> RUNNING -> SUCCESSFUL | FAILED, with retry
and lost-worker recovery back to READY, and release (graceful stop) undoing an attempt. Two
``Store`` connections share the file so that every step also crosses connections.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
)

from litetasks.records import ErrorRecord, JobState, NewJob, Outcome, WorkerRecord
from litetasks.store import Store

START_US = 1_700_000_000_000_000
SECOND_US = 1_000_000
LEASE_US = 30 * SECOND_US
QUEUES = ("default", "emails", "reports")
WORKERS = ("w1", "w2", "w3")
LOST = ErrorRecord(exception_class_path="litetasks.exceptions.WorkerLost", traceback="lost\n")
BOOM = ErrorRecord(exception_class_path="builtins.ValueError", traceback="boom\n")
TERMINAL = (JobState.SUCCESSFUL, JobState.FAILED)

# A few shared priorities make ties (and so the due-time and FIFO tie-breaks) common.
priorities = st.sampled_from([-100, 0, 1, 100]) | st.integers(-100, 100)
# Whole seconds make due times collide with the clock; odd microseconds probe the boundary.
delays_us = st.integers(0, 60).map(lambda s: s * SECOND_US) | st.integers(0, 60 * SECOND_US)
job_specs = st.fixed_dictionaries(
    {
        "priority": priorities,
        "queue_name": st.sampled_from(QUEUES),
        "delay_us": st.none() | delays_us,
        "max_attempts": st.integers(1, 3),
    }
)
queue_sets = st.none() | st.sets(st.sampled_from(QUEUES), max_size=len(QUEUES))
workers = st.sampled_from(WORKERS)


@dataclass
class ModelJob:
    seq: int
    queue_name: str
    priority: int
    due_at: int
    max_attempts: int
    state: JobState = JobState.READY
    owner: str | None = None
    worker_ids: list[str] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    return_json: str | None = None

    @property
    def attempts(self) -> int:
        return len(self.worker_ids)


class QueueMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="litetasks-machine-"))
        self.now = START_US
        path = self.folder / "tasks.sqlite3"
        self.stores = (Store(path, clock=self.clock), Store(path, clock=self.clock))
        self.model: dict[str, ModelJob] = {}
        self.heartbeats: dict[str, int] = {}  # the workers table: worker_id -> heartbeat_at
        self.finished: dict[str, JobState] = {}
        self.next_seq = 0

    def clock(self) -> int:
        return self.now

    def teardown(self) -> None:
        for store in self.stores:
            store.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- producers ---------------------------------------------------------------------------

    def _new(self, spec: dict[str, int | str | None]) -> NewJob:
        self.next_seq += 1
        job_id = f"job-{self.next_seq}"
        delay_us = spec["delay_us"]
        run_after = None if delay_us is None else self.now + int(delay_us)
        self.model[job_id] = ModelJob(
            seq=self.next_seq,
            queue_name=str(spec["queue_name"]),
            priority=int(spec["priority"]),  # type: ignore[arg-type]
            due_at=self.now if run_after is None else run_after,
            max_attempts=int(spec["max_attempts"]),  # type: ignore[arg-type]
        )
        return NewJob(
            job_id=job_id,
            task_path="tests.tasks.noop",
            queue_name=str(spec["queue_name"]),
            priority=int(spec["priority"]),  # type: ignore[arg-type]
            run_after_us=run_after,
            max_attempts=int(spec["max_attempts"]),  # type: ignore[arg-type]
        )

    @rule(target=jobs, spec=job_specs, via=st.integers(0, 1))
    def enqueue(self, spec: dict[str, int | str | None], via: int) -> str:
        job = self._new(spec)
        assert self.stores[via].enqueue([job]) == self.now
        return job.job_id

    @rule(target=jobs, specs=st.lists(job_specs, min_size=1, max_size=4), via=st.integers(0, 1))
    def enqueue_bulk(self, specs: list[dict[str, int | str | None]], via: int) -> object:
        new = [self._new(spec) for spec in specs]
        assert self.stores[via].enqueue(new) == self.now
        return multiple(*(job.job_id for job in new))

    # -- consumers ---------------------------------------------------------------------------

    def _eligible(self, queues: set[str] | None) -> list[str]:
        due = [
            (-job.priority, job.due_at, job.seq, job_id)
            for job_id, job in self.model.items()
            if job.state is JobState.READY
            and job.due_at <= self.now
            and (queues is None or job.queue_name in queues)
        ]
        return [job_id for *_, job_id in sorted(due)]

    @rule(worker=workers, queues=queue_sets, limit=st.integers(1, 3), via=st.integers(0, 1))
    def claim(self, worker: str, queues: set[str] | None, limit: int, via: int) -> None:
        expected = self._eligible(queues)[:limit]
        claimed = self.stores[via].claim(worker, queues=queues, limit=limit)
        assert [job.job_id for job in claimed] == expected
        for record in claimed:
            job = self.model[record.job_id]
            job.state = JobState.RUNNING
            job.owner = worker
            job.worker_ids.append(worker)
            assert record.state is JobState.RUNNING
            assert record.owner == worker
            assert record.attempts == job.attempts
            assert record.worker_ids == tuple(job.worker_ids)

    def _running(self) -> list[str]:
        return sorted(
            (job_id for job_id, job in self.model.items() if job.state is JobState.RUNNING),
            key=lambda job_id: self.model[job_id].seq,
        )

    def _outcome(self, job_id: str, **fields: object) -> Outcome:
        job = self.model[job_id]
        return Outcome(
            job_id=job_id,
            worker_id=str(job.owner),
            attempt=job.attempts,
            started_at_us=self.now,
            finished_at_us=self.now,
            **fields,  # type: ignore[arg-type]
        )

    @precondition(lambda self: self._running())
    @rule(data=st.data(), value=st.integers(), via=st.integers(0, 1))
    def complete(self, data: st.DataObject, value: int, via: int) -> None:
        job_id = data.draw(st.sampled_from(self._running()))
        outcome = self._outcome(job_id, return_json=str(value))
        assert self.stores[via].record([outcome]) == [True]
        job = self.model[job_id]
        job.state, job.owner, job.return_json = JobState.SUCCESSFUL, None, str(value)

    @precondition(lambda self: self._running())
    @rule(data=st.data(), retry_in_us=st.none() | delays_us, via=st.integers(0, 1))
    def fail(self, data: st.DataObject, retry_in_us: int | None, via: int) -> None:
        job_id = data.draw(st.sampled_from(self._running()))
        retry_at = None if retry_in_us is None else self.now + retry_in_us
        outcome = self._outcome(job_id, error=BOOM, retry_at_us=retry_at)
        assert self.stores[via].record([outcome]) == [True]
        job = self.model[job_id]
        job.owner = None
        job.errors.append(BOOM)
        if retry_at is not None and job.attempts < job.max_attempts:
            job.state, job.due_at = JobState.READY, retry_at
        else:
            job.state = JobState.FAILED

    @rule(job_id=jobs, worker=workers, attempt_shift=st.integers(-2, 2), via=st.integers(0, 1))
    def record_stale(self, job_id: str, worker: str, attempt_shift: int, via: int) -> None:
        """An outcome whose (worker, attempt) is not the job's live claim changes nothing."""
        job = self.model[job_id]
        live = job.state is JobState.RUNNING and worker == job.owner and attempt_shift == 0
        if live:
            attempt_shift = 1
        outcome = Outcome(
            job_id=job_id,
            worker_id=worker,
            attempt=job.attempts + attempt_shift,
            started_at_us=self.now,
            finished_at_us=self.now,
            return_json="null",
        )
        before = self.stores[via].get(job_id)
        assert self.stores[via].record([outcome]) == [False]
        assert self.stores[1 - via].get(job_id) == before

    def _release_in_model(self, worker: str, job_ids: list[str] | None) -> set[str]:
        released = set()
        for job_id in self._running():
            job = self.model[job_id]
            if job.owner == worker and (job_ids is None or job_id in job_ids):
                job.state, job.owner = JobState.READY, None
                job.worker_ids.pop()
                released.add(job_id)
        return released

    @rule(worker=workers, data=st.data(), via=st.integers(0, 1))
    def release(self, worker: str, data: st.DataObject, via: int) -> None:
        job_ids = data.draw(st.none() | st.lists(st.sampled_from(sorted(self.model) or ["x"])))
        expected = self._release_in_model(worker, job_ids)
        assert set(self.stores[via].release(worker, job_ids)) == expected

    # -- workers -----------------------------------------------------------------------------

    @rule(worker=workers, via=st.integers(0, 1))
    def register_worker(self, worker: str, via: int) -> None:
        self.stores[via].register_worker(
            WorkerRecord(
                worker_id=worker,
                pid=1,
                host="elsewhere",
                boot_id="",
                proc_start=0,
                queues=None,
                started_at_us=self.now,
                heartbeat_at_us=self.now,
            )
        )
        self.heartbeats[worker] = self.now

    @rule(worker=workers, via=st.integers(0, 1))
    def heartbeat(self, worker: str, via: int) -> None:
        assert self.stores[via].heartbeat(worker) == (worker in self.heartbeats)
        if worker in self.heartbeats:
            self.heartbeats[worker] = self.now

    @rule(worker=workers, via=st.integers(0, 1))
    def unregister_worker(self, worker: str, via: int) -> None:
        expected = self._release_in_model(worker, None)
        assert set(self.stores[via].unregister_worker(worker)) == expected
        self.heartbeats.pop(worker, None)

    def _recover(self, dead: set[str], alive: set[str], via: int) -> None:
        stale_before = self.now - LEASE_US

        def is_lost(owner: str) -> bool:
            fresh = self.heartbeats.get(owner, stale_before - 1) >= stale_before
            return owner in dead or (owner not in alive and not fresh)

        expected = []
        for job_id in self._running():
            job = self.model[job_id]
            assert job.owner is not None
            if not is_lost(job.owner):
                continue
            job.owner = None
            job.errors.append(LOST)
            job.state = JobState.READY if job.attempts < job.max_attempts else JobState.FAILED
            expected.append((job_id, job.state))
        for worker in list(self.heartbeats):
            stale = self.heartbeats[worker] < stale_before
            if worker in dead or (stale and worker not in alive):
                del self.heartbeats[worker]

        settled = self.stores[via].recover_lost(
            stale_before_us=stale_before, error=LOST, known_dead=dead, known_alive=alive
        )
        assert sorted(settled) == sorted(expected)

    @rule(
        dead=st.sets(workers),
        alive=st.sets(workers),
        via=st.integers(0, 1),
    )
    def recover_lost(self, dead: set[str], alive: set[str], via: int) -> None:
        self._recover(dead, alive, via)

    @rule(worker=workers, past_lease_s=st.integers(1, 30), via=st.integers(0, 1))
    def worker_dies(self, worker: str, past_lease_s: int, via: int) -> None:
        """The worker stops heartbeating; once its lease is over, recovery settles its jobs."""
        self.now += LEASE_US + past_lease_s * SECOND_US
        alive = set(WORKERS) - {worker}
        for other in alive & set(self.heartbeats):
            self.heartbeats[other] = self.now
            assert self.stores[via].heartbeat(other)
        self._recover(set(), alive, via)
        assert worker not in self.heartbeats

    @rule(step_us=st.integers(1, 120).map(lambda s: s * SECOND_US) | st.integers(1, 3))
    def advance_clock(self, step_us: int) -> None:
        self.now += step_us

    @rule(job_id=consumes(jobs), via=st.integers(0, 1))
    def forget_handle(self, job_id: str, via: int) -> None:
        """Dropping a handle from the bundle must not lose the job: it is still readable."""
        assert self.stores[via].get(job_id).job_id == job_id

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def counts_match_the_model(self) -> None:
        expected: dict[tuple[str, JobState], int] = {}
        for job in self.model.values():
            key = (job.queue_name, job.state)
            expected[key] = expected.get(key, 0) + 1
        for store in self.stores:
            assert store.counts() == expected

    @invariant()
    def every_job_matches_the_model(self) -> None:
        store = self.stores[0]
        for job_id, job in self.model.items():
            record = store.get(job_id)  # no lost job: every enqueued id is still there
            assert record.state is job.state
            assert record.owner == job.owner
            assert (record.owner is not None) == (record.state is JobState.RUNNING)
            assert record.attempts == len(record.worker_ids) == job.attempts
            assert record.worker_ids == tuple(job.worker_ids)
            assert record.errors == tuple(job.errors)
            assert record.attempts <= record.max_attempts
            if record.state is JobState.READY:
                assert record.due_at_us == job.due_at
            if record.state is JobState.SUCCESSFUL:
                assert record.return_json == job.return_json
            assert (record.finished_at_us is not None) == (record.state in TERMINAL)

    @invariant()
    def terminal_states_stick(self) -> None:
        store = self.stores[1]
        for job_id, state in self.finished.items():
            assert store.get(job_id).state is state
        for job_id, job in self.model.items():
            if job.state in TERMINAL:
                self.finished.setdefault(job_id, job.state)

    @invariant()
    def a_running_job_has_one_owner(self) -> None:
        listed: list[str] = []
        for worker in self.stores[1].get_workers():
            listed += worker.current_job_ids
        assert len(listed) == len(set(listed))
        owners = self.stores[1].get_running_owners()
        assert owners == {job.owner for job in self.model.values() if job.owner is not None}

    @invariant()
    def workers_table_matches_the_model(self) -> None:
        rows = {row.worker_id: row.heartbeat_at_us for row in self.stores[0].get_workers()}
        assert rows == self.heartbeats


# Built here, after conftest.py loaded the "dev" or "ci" profile, so max_examples comes from it.
QueueMachine.TestCase.settings = settings(stateful_step_count=50, deadline=None)
TestQueueMachine = QueueMachine.TestCase
