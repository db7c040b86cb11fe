"""A Hypothesis state machine over the real ``Store``, checked against a plain-dict model.

The model mirrors the state machine of docs/architecture.md: READY -> RUNNING -> SUCCESSFUL |
FAILED, with retry and lost-worker recovery back to READY, and release (graceful stop) undoing
an attempt. Two ``Store`` connections share the file so that every step also crosses
connections.

The features beyond DEP 0014 are in it too: unique keys (at most one live job per key),
completion hooks (inserted with the outcome, adopted into the model as ordinary jobs), cancel
(READY: FAILED at once; RUNNING: flagged, then never retried), manual retry (a fresh attempt
budget), prune (exactly the finished jobs older than the cut-off) and periodic slots (once).

A worker that did not find a task in its code puts it back (READY after a delay, the attempt
not counted), and its claims skip such task paths for a while (``skip``).

So are rows written behind the store's back: ``corrupt`` puts a value litetasks never writes
into one column of a READY job (bad JSON, text for a number, a time out of range). The claim
that takes it fails it alone (FAILED, a ``MalformedJob`` error naming the column, the value
replaced), in its place in the claim order as SQLite sorts such values; every other job is
claimed as before, and reading the row never fails.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

from litetasks._store.actions import CANCELLED_ERROR, CancelResult
from litetasks._store.clock import LATEST_US
from litetasks._store.records import (
    ErrorRecord,
    Hook,
    JobRecord,
    JobState,
    NewJob,
    Outcome,
    WorkerRecord,
)
from litetasks._store.store import Store
from litetasks._store.workers import CANCELLED_LOST_ERROR

START_US = 1_700_000_000_000_000
# Each example opens a new queue file and closes it: WAL set-up and the checkpoint at close
# sync to disk, about a third of the run on a slow disk. In memory (Linux's tmpfs) the same
# SQLite code runs without those waits; nothing here is about the disk.
MEMORY_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
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
        "unique_key": st.none() | st.sampled_from(["k1", "k2"]),
        "hooks": st.lists(
            st.sampled_from(["success", "failure", "finish"]), max_size=2, unique=True
        ),
    }
)
HOOK_PATH = "hooks.{}"
queue_sets = st.none() | st.sets(st.sampled_from(QUEUES), max_size=len(QUEUES))
workers = st.sampled_from(WORKERS)

MALFORMED = "litetasks.exceptions.MalformedJob"
# (column, SQL value, how SQLite sorts it): values litetasks never writes. In ORDER BY
# "priority DESC, due_at": numbers sort below text, text below blobs.
CORRUPTIONS = [
    ("errors", "'[bad'", None),
    ("errors", "'{}'", None),
    ("errors", "'[1]'", None),
    ("hooks", "'{bad'", None),
    ("hooks", "'[1]'", None),
    ("worker_ids", "'nope'", None),
    ("worker_ids", "'{}'", None),
    ("priority", "'high'", (-1, 0.0)),
    ("priority", "x'5b5d'", (-2, 0.0)),
    ("priority", "1.5", (0, -1.5)),
    ("run_after", str(LATEST_US + 1), None),
    ("run_after", "'soon'", None),
    ("due_at", "'soon'", (1, 0)),
    ("due_at", str(2**62), (0, 2**62)),
    ("due_at", str(-(2**62)), (0, -(2**62))),
    ("max_attempts", "'x'", None),
    ("enqueued_at", "'yesterday'", None),
    ("task_path", "x'5b5d'", None),
]
# What rewrites a corrupted column, besides the claim: a manual retry (due time, attempts
# budget) and cancelling a READY job (its error is appended, its hooks read).
REPAIRED_BY_RETRY = {"due_at", "run_after", "max_attempts"}
REPAIRED_BY_CANCEL = {"errors", "hooks"}


def malformed(column: str) -> ErrorRecord:
    """The model's stand-in for the MalformedJob error naming ``column`` (see errors_match)."""
    return ErrorRecord(exception_class_path=MALFORMED, traceback=column)


def errors_match(stored: tuple[ErrorRecord, ...], model: list[ErrorRecord]) -> bool:
    if len(stored) != len(model):
        return False
    for error, expected in zip(stored, model, strict=True):
        if expected.exception_class_path == MALFORMED:
            named = f"column {expected.traceback!r}"
            if error.exception_class_path != MALFORMED or named not in error.traceback:
                return False
        elif error != expected:
            return False
    return True


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
    unique_key: str | None = None
    hooks: tuple[str, ...] = ()
    cancel_requested: bool = False
    budget: int = 1
    finished_at: int | None = None
    # Retried by hand: due at once (due_at = the retry), run_after cleared.
    retried_by_hand: bool = False
    # A column holding a value litetasks never writes (see CORRUPTIONS), and how SQLite sorts
    # a corrupted priority or due time.
    put_backs: int = 0  # put back by a worker that did not find its task
    task_path: str = "tests.tasks.noop"
    corrupted: str | None = None
    priority_key: tuple[int, float] | None = None
    due_key: tuple[int, int] | None = None

    @property
    def attempts(self) -> int:
        return len(self.worker_ids)


class QueueMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="litetasks-machine-", dir=MEMORY_DIR))
        self.now = START_US
        path = self.folder / "tasks.sqlite3"
        self.stores = (Store(path, clock=self.clock), Store(path, clock=self.clock))
        self.model: dict[str, ModelJob] = {}
        self.heartbeats: dict[str, int] = {}  # the workers table: worker_id -> heartbeat_at
        self.finished: dict[str, JobState] = {}
        self.next_seq = 0
        # Hooks the store must have inserted: (hook task path, parent job id) -> model seq.
        self.pending_hooks: dict[tuple[str, str], int] = {}
        self.slots: dict[str, int] = {}  # periodic schedule -> last slot enqueued
        # Tasks finished per (queue, task path, state): what the store's counters must say.
        self.finished_counts: dict[tuple[str, str, str], int] = {}

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
        hooks = tuple(spec.get("hooks") or ())  # type: ignore[arg-type]
        unique_key = spec.get("unique_key")
        self.model[job_id] = ModelJob(
            seq=self.next_seq,
            queue_name=str(spec["queue_name"]),
            priority=int(spec["priority"]),  # type: ignore[arg-type]
            due_at=self.now if run_after is None else run_after,
            max_attempts=int(spec["max_attempts"]),  # type: ignore[arg-type]
            unique_key=None if unique_key is None else str(unique_key),
            hooks=hooks,
            budget=int(spec["max_attempts"]),  # type: ignore[arg-type]
        )
        return NewJob(
            job_id=job_id,
            task_path="tests.tasks.noop",
            queue_name=str(spec["queue_name"]),
            priority=int(spec["priority"]),  # type: ignore[arg-type]
            run_after_us=run_after,
            max_attempts=int(spec["max_attempts"]),  # type: ignore[arg-type]
            unique_key=None if unique_key is None else str(unique_key),
            hooks=tuple(Hook(when=w, task_path=HOOK_PATH.format(w)) for w in hooks),
        )

    def _by_seq(self) -> list[str]:
        """Job ids in enqueue order: hook jobs have random ids, so sorting by id would make
        draws differ between replays of one example."""
        return sorted(self.model, key=lambda job_id: self.model[job_id].seq)

    def _draw_ids(self, data: st.DataObject) -> list[str]:
        """Up to three distinct ids: of jobs, or one no job has."""
        return data.draw(
            st.lists(st.sampled_from([*self._by_seq(), "unknown"]), max_size=3, unique=True)
        )

    def _live_twin(self, key: str | None) -> str | None:
        if key is None:
            return None
        for job_id, job in self.model.items():
            if job.unique_key == key and job.state in (JobState.READY, JobState.RUNNING):
                return job_id
        return None

    def _finish(self, job: ModelJob, job_id: str, state: JobState) -> None:
        """Make ``job`` terminal in the model, expecting its hooks that fire on ``state``."""
        job.state, job.owner, job.finished_at = state, None, self.now
        # A task path still corrupted (a READY job cancelled) counts as its blob read as text.
        path = "[]" if job.corrupted == "task_path" else job.task_path
        key = (job.queue_name, path, state.value)
        self.finished_counts[key] = self.finished_counts.get(key, 0) + 1
        for when in job.hooks:
            if when == "finish" or (when == "success") == (state is JobState.SUCCESSFUL):
                self.next_seq += 1
                self.pending_hooks[(HOOK_PATH.format(when), job_id)] = self.next_seq

    def _adopt_hooks(self) -> dict[tuple[str, str], str]:
        """Hook jobs the store inserted become ordinary jobs of the model; return their ids
        by (hook task path, parent job id)."""
        rows = (
            self.stores[0]
            ._db.execute("SELECT job_id, task_path, args FROM jobs WHERE task_path LIKE 'hooks.%'")
            .fetchall()
        )
        adopted = {}
        for hook_id, path, args in rows:
            if hook_id in self.model:
                continue
            parent = args[2:-2]  # '["job-7"]'
            seq = self.pending_hooks.pop((path, parent))  # expected, and only once
            self.model[hook_id] = ModelJob(
                seq=seq,
                queue_name="default",
                priority=0,
                due_at=self.now,
                max_attempts=1,
                task_path=path,
            )
            adopted[(path, parent)] = hook_id
        assert self.pending_hooks == {}, self.pending_hooks
        return adopted

    def _insert(self, specs: list[dict[str, int | str | None]], via: int) -> list[str]:
        """Enqueue ``specs`` in one transaction (deduplicating unique keys); return the ids
        the model now holds for them (a twin's id for a duplicate)."""
        ids: list[str] = []
        expected: list[str | None] = []
        new: list[NewJob] = []
        for spec in specs:
            twin = self._live_twin(spec.get("unique_key"))  # type: ignore[arg-type]
            if twin is None:
                job = self._new(spec)
                new.append(job)
                ids.append(job.job_id)
            else:
                new.append(self._shadow(spec))
                ids.append(twin)
            expected.append(twin)
        if any(job.unique_key for job in new):
            at, twins = self.stores[via].enqueue_unique(new)
            assert [None if t is None else t.job_id for t in twins] == expected
        else:
            at = self.stores[via].enqueue(new)
        assert at == self.now
        return ids

    def _shadow(self, spec: dict[str, int | str | None]) -> NewJob:
        """A job the store must not insert: its unique key has a live twin."""
        return NewJob(
            job_id=f"twin-{len(self.model)}-{self.now}",
            task_path="tests.tasks.noop",
            unique_key=str(spec["unique_key"]),
        )

    @rule(target=jobs, spec=job_specs, via=st.integers(0, 1))
    def enqueue(self, spec: dict[str, int | str | None], via: int) -> str:
        return self._insert([spec], via)[0]

    @rule(target=jobs, specs=st.lists(job_specs, min_size=1, max_size=4), via=st.integers(0, 1))
    def enqueue_bulk(self, specs: list[dict[str, int | str | None]], via: int) -> object:
        return multiple(*self._insert(specs, via))

    # -- rows written behind the store's back ------------------------------------------------

    def _ready_clean(self) -> list[str]:
        return [
            job_id
            for job_id in self._by_seq()
            if self.model[job_id].state is JobState.READY and not self.model[job_id].corrupted
        ]

    @precondition(lambda self: self._ready_clean())
    @rule(data=st.data(), corruption=st.sampled_from(CORRUPTIONS), via=st.integers(0, 1))
    def corrupt(self, data: st.DataObject, corruption: tuple[str, str, object], via: int) -> None:
        """Another program writes a value litetasks never writes into a READY job's row."""
        job_id = data.draw(st.sampled_from(self._ready_clean()))
        column, value, sort_key = corruption
        self.stores[via]._db.execute(
            f"UPDATE jobs SET {column} = {value} WHERE job_id = ?", (job_id,)
        )
        job = self.model[job_id]
        job.corrupted = column
        if column == "priority":
            job.priority_key = sort_key  # type: ignore[assignment]
        elif column == "due_at":
            job.due_key = sort_key  # type: ignore[assignment]

    def _repaired(self, job: ModelJob) -> None:
        job.corrupted, job.priority_key, job.due_key = None, None, None

    def _fail_corrupted(self, job_id: str, worker: str) -> None:
        """The claim took a corrupted job: FAILED, its error naming the column, the value
        replaced (priority 0, a worker_ids of this claim alone, no hooks, ...)."""
        job = self.model[job_id]
        column = job.corrupted
        assert column is not None
        if column == "worker_ids":
            job.worker_ids = [worker]
        else:
            job.worker_ids.append(worker)
        if column == "errors":
            job.errors = [malformed(column)]
        else:
            job.errors.append(malformed(column))
        if column == "hooks":
            job.hooks = ()
        if column == "priority":
            job.priority = 0
        if column == "max_attempts":
            job.max_attempts = job.attempts
        if column == "task_path":
            job.task_path = ""
        self._repaired(job)
        self._finish(job, job_id, JobState.FAILED)

    # -- consumers ---------------------------------------------------------------------------

    def _eligible(
        self,
        queues: set[str] | None,
        skip: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> list[str | tuple[str, str]]:
        """READY jobs due now, in claim order. A due time that is not a stored time counts as
        due (so that a claim fails the job rather than it waiting for ever). Hooks the store
        is expected to have enqueued (``pending_hooks``) are READY too: priority 0, due now."""
        due: list[tuple[tuple[int, float], tuple[int, int], int, str | tuple[str, str]]] = [
            (
                job.priority_key or (0, -job.priority),
                job.due_key or (0, job.due_at),
                job.seq,
                job_id,
            )
            for job_id, job in self.model.items()
            if job.state is JobState.READY
            and (job.due_key is not None or job.due_at <= self.now)
            and (queues is None or job.queue_name in queues)
            and (job.task_path not in skip or job.corrupted == "task_path")  # a blob: kept
        ]
        if queues is None or "default" in queues:
            due += [
                ((0, 0), (0, self.now), seq, hook)
                for hook, seq in self.pending_hooks.items()
                if hook[0] not in skip
            ]
        return [job_id for *_, job_id in sorted(due)]

    @rule(
        worker=workers,
        queues=queue_sets,
        limit=st.integers(1, 3),
        skip=st.sets(st.sampled_from(["tests.tasks.noop", HOOK_PATH.format("finish")])),
        via=st.integers(0, 1),
    )
    def claim(
        self, worker: str, queues: set[str] | None, limit: int, skip: set[str], via: int
    ) -> None:
        # The claim fails a corrupted job on its way (enqueueing its hooks), and goes on, in
        # rounds, to fill its limit: each round takes the best due jobs left.
        expected: list[str | tuple[str, str]] = []  # ids, or (path, parent) of a new hook
        taken: set[str | tuple[str, str]] = set()
        while len(expected) < limit:
            batch = [j for j in self._eligible(queues, skip) if j not in taken]
            batch = batch[: limit - len(expected)]
            taken.update(batch)
            bad = [j for j in batch if isinstance(j, str) and self.model[j].corrupted]
            expected += [j for j in batch if j not in bad]
            for job_id in bad:
                self._fail_corrupted(str(job_id), worker)
            if not bad:
                break
        claimed = self.stores[via].claim(worker, queues=queues, limit=limit, skip=skip)
        adopted = self._adopt_hooks()
        ids = [adopted[j] if isinstance(j, tuple) else j for j in expected]
        assert [job.job_id for job in claimed] == ids
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
        job.return_json = str(value)
        self._finish(job, job_id, JobState.SUCCESSFUL)
        self._adopt_hooks()

    @precondition(lambda self: len(self._running()) >= 2)
    @rule(data=st.data(), via=st.integers(0, 1), with_stale=st.booleans())
    def complete_group(self, data: st.DataObject, via: int, with_stale: bool) -> None:
        """Successes recorded together as a worker reports them (in one statement); a stale
        outcome among them undoes the group and each is recorded on its own."""
        running = self._running()
        chosen = data.draw(
            st.lists(st.sampled_from(running), min_size=2, max_size=len(running), unique=True)
        )
        outcomes = [
            dataclasses.replace(
                self._outcome(job_id, return_json=f'"{job_id}"'),
                has_hooks=bool(self.model[job_id].hooks),
            )
            for job_id in chosen
        ]
        expected = [True] * len(chosen)
        if with_stale:
            stale = dataclasses.replace(outcomes[0], job_id="no-such-job")
            outcomes.insert(1, stale)
            expected.insert(1, False)
        assert self.stores[via].record(outcomes) == expected
        for job_id in chosen:
            job = self.model[job_id]
            job.return_json = f'"{job_id}"'
            self._finish(job, job_id, JobState.SUCCESSFUL)
        self._adopt_hooks()

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
        retried = retry_at is not None and job.attempts < job.max_attempts
        if retried and not job.cancel_requested:  # a cancelled job is never retried
            assert retry_at is not None
            job.state, job.due_at = JobState.READY, retry_at
        else:
            self._finish(job, job_id, JobState.FAILED)
        self._adopt_hooks()

    @precondition(lambda self: self._running())
    @rule(data=st.data(), delay_us=delays_us, via=st.integers(0, 1))
    def put_back(self, data: st.DataObject, delay_us: int, via: int) -> None:
        """A worker did not find the task in its code: READY again after the delay, the
        attempt not counted, the put-back counted."""
        job_id = data.draw(st.sampled_from(self._running()))
        outcome = self._outcome(job_id, put_back_due_us=self.now + delay_us)
        assert self.stores[via].record([outcome]) == [True]
        job = self.model[job_id]
        job.state, job.owner, job.due_at = JobState.READY, None, self.now + delay_us
        job.worker_ids.pop()
        job.put_backs += 1

    @rule(job_id=jobs, worker=workers, attempt_shift=st.integers(-2, 2), via=st.integers(0, 1))
    def record_stale(self, job_id: str, worker: str, attempt_shift: int, via: int) -> None:
        """An outcome whose (worker, attempt) is not the job's live claim changes nothing."""
        if job_id not in self.model:  # pruned
            return
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
        job_ids = data.draw(st.none() | st.lists(st.sampled_from(self._by_seq() or ["x"])))
        expected = self._release_in_model(worker, job_ids)
        assert set(self.stores[via].release(worker, job_ids)) == expected

    # -- operator actions ----------------------------------------------------------------------

    @rule(data=st.data(), via=st.integers(0, 1))
    def cancel(self, data: st.DataObject, via: int) -> None:
        job_ids = self._draw_ids(data)
        expected = {}
        for job_id in job_ids:
            job = self.model.get(job_id)
            if job is None:
                expected[job_id] = CancelResult.NOT_FOUND
            elif job.state is JobState.READY:
                self._cancel_ready(job, job_id)
                expected[job_id] = CancelResult.CANCELLED
            elif job.state is JobState.RUNNING:
                job.cancel_requested = True
                expected[job_id] = CancelResult.CANCELLING
            else:
                expected[job_id] = CancelResult.FINISHED
        assert self.stores[via].cancel(job_ids) == expected
        self._adopt_hooks()

    def _cancel_ready(self, job: ModelJob, job_id: str) -> None:
        """A READY job cancelled: FAILED with TaskCancelled. A corrupted ``errors`` is
        replaced (its MalformedJob error first), corrupted hooks are dropped and said so."""
        if job.corrupted == "errors":
            job.errors = [malformed("errors"), CANCELLED_ERROR]
        else:
            job.errors.append(CANCELLED_ERROR)
        if job.corrupted == "hooks":
            job.hooks = ()
            job.errors.append(malformed("hooks"))
        if job.corrupted in REPAIRED_BY_CANCEL:
            self._repaired(job)
        self._finish(job, job_id, JobState.FAILED)

    @precondition(lambda self: self._running())
    @rule(data=st.data(), via=st.integers(0, 1))
    def cancel_running(self, data: st.DataObject, via: int) -> None:
        """Running jobs are few among all; this rule picks one, so that what follows a
        cancelled RUNNING job (its outcome, its recovery, a retry) gets exercised."""
        job_id = data.draw(st.sampled_from(self._running()))
        self.model[job_id].cancel_requested = True
        assert self.stores[via].cancel([job_id]) == {job_id: CancelResult.CANCELLING}

    @rule(worker=workers, via=st.integers(0, 1))
    def cancel_requested(self, worker: str, via: int) -> None:
        expected = [
            job_id
            for job_id in self._running()
            if self.model[job_id].owner == worker and self.model[job_id].cancel_requested
        ]
        assert sorted(self.stores[via].cancel_requested(worker)) == sorted(expected)

    @rule(data=st.data(), via=st.integers(0, 1))
    def retry(self, data: st.DataObject, via: int) -> None:
        job_ids = self._draw_ids(data)
        expected = {}
        for job_id in job_ids:
            job = self.model.get(job_id)
            if job is None:
                expected[job_id] = "not found"
            elif job.state is not JobState.FAILED:
                expected[job_id] = "not failed"
            elif self._live_twin(job.unique_key) is not None:
                expected[job_id] = "duplicate"
            else:
                job.state, job.due_at, job.finished_at = JobState.READY, self.now, None
                job.max_attempts = job.attempts + job.budget
                job.put_backs = 0
                if job.corrupted in REPAIRED_BY_RETRY:
                    self._repaired(job)
                job.cancel_requested = False
                job.retried_by_hand = True
                self.finished.pop(job_id, None)  # only a manual retry reopens a finished job
                expected[job_id] = "retried"
        assert self.stores[via].retry(job_ids) == expected

    @rule(
        age_us=st.integers(0, 300).map(lambda s: s * SECOND_US),
        states=st.sets(st.sampled_from(TERMINAL), min_size=1),
        batch=st.integers(1, 5),
        via=st.integers(0, 1),
    )
    def prune(self, age_us: int, states: set[JobState], batch: int, via: int) -> None:
        cutoff = self.now - age_us
        doomed = {
            job_id
            for job_id, job in self.model.items()
            if job.state in states and job.finished_at is not None and job.finished_at < cutoff
        }
        assert self.stores[via].prune(finished_before_us=cutoff, states=states, batch=batch) == len(
            doomed
        )
        for job_id in doomed:
            del self.model[job_id]
            self.finished.pop(job_id, None)

    @rule(
        target=jobs,
        name=st.sampled_from(["hourly", "daily"]),
        slot_shift_s=st.integers(-120, 0),
        via=st.integers(0, 1),
    )
    def enqueue_slot(self, name: str, slot_shift_s: int, via: int) -> object:
        slot = self.now + slot_shift_s * SECOND_US
        spec: dict[str, int | str | None] = {
            "priority": 0,
            "queue_name": "default",
            "delay_us": None,
            "max_attempts": 1,
        }
        fresh = slot > self.slots.get(name, -1)
        if not fresh:
            job = NewJob(job_id=f"slot-{name}-{slot}", task_path="tests.tasks.noop")
            assert self.stores[via].enqueue_slot(name, slot, job) is None
            return multiple()
        job = self._new(spec)
        assert self.stores[via].enqueue_slot(name, slot, job) == self.now  # its enqueued_at
        self.slots[name] = slot
        assert self.stores[via].schedules()[name] == (slot, job.job_id)
        return job.job_id

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
            job.errors.append(CANCELLED_LOST_ERROR if job.cancel_requested else LOST)
            if job.attempts < job.max_attempts and not job.cancel_requested:
                job.state = JobState.READY
            else:
                self._finish(job, job_id, JobState.FAILED)
            expected.append((job_id, job.state))
        for worker in list(self.heartbeats):
            stale = self.heartbeats[worker] < stale_before
            if worker in dead or (stale and worker not in alive):
                del self.heartbeats[worker]

        recovered = self.stores[via].recover_lost(
            stale_before_us=stale_before, error=LOST, known_dead=dead, known_alive=alive
        )
        assert sorted(recovered) == sorted(expected)
        self._adopt_hooks()

    @rule(
        dead=st.sets(workers),
        alive=st.sets(workers),
        via=st.integers(0, 1),
    )
    def recover_lost(self, dead: set[str], alive: set[str], via: int) -> None:
        self._recover(dead, alive, via)

    @rule(worker=workers, past_lease_s=st.integers(1, 30), via=st.integers(0, 1))
    def worker_dies(self, worker: str, past_lease_s: int, via: int) -> None:
        """The worker stops heartbeating; once its lease is over, its jobs are recovered."""
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
        """Dropping a handle from the bundle must not lose the job: it is still readable
        (unless it was pruned)."""
        if job_id in self.model:
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
    def finished_counters_match_what_finished(self) -> None:
        for store in self.stores:  # pruning deletes rows, never counts
            assert store.counters.finished_stats().totals == self.finished_counts

    @invariant()
    def every_job_matches_the_model(self) -> None:
        store = self.stores[0]
        for job_id, job in self.model.items():
            record = store.get(job_id)  # no lost job: every enqueued id is still there
            assert record.state is job.state
            assert record.owner == job.owner
            assert (record.owner is not None) == (record.state is JobState.RUNNING)
            if job.corrupted is not None:
                self._check_corrupted(record, job.corrupted)
                continue
            assert record.malformed == ()
            assert record.put_backs == job.put_backs
            assert record.attempts == len(record.worker_ids) == job.attempts
            assert record.worker_ids == tuple(job.worker_ids)
            assert errors_match(record.errors, job.errors), (record.errors, job.errors)
            assert record.attempts <= record.max_attempts
            assert record.cancel_requested == job.cancel_requested
            assert record.unique_key == job.unique_key
            if record.state is JobState.READY and not job.retried_by_hand:
                assert record.due_at_us == job.due_at
            if record.state is JobState.SUCCESSFUL:
                assert record.return_json == job.return_json
            assert (record.finished_at_us is not None) == (record.state in TERMINAL)

    @staticmethod
    def _check_corrupted(record: JobRecord, column: str) -> None:
        """A corrupted row not taken by a claim yet reads without fail, naming its column
        (a due time is not part of the record: only the claim reads it)."""
        named = [c for c, _ in record.malformed]
        assert named == ([] if column == "due_at" else [column]), record.malformed

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
    def one_live_job_per_unique_key(self) -> None:
        rows = (
            self.stores[1]
            ._db.execute(
                "SELECT unique_key, count(*) FROM jobs WHERE unique_key IS NOT NULL"
                " AND state IN ('READY', 'RUNNING') GROUP BY unique_key"
            )
            .fetchall()
        )
        assert all(count == 1 for _, count in rows), rows

    @invariant()
    def no_hook_is_missing_or_extra(self) -> None:
        assert self.pending_hooks == {}
        (stored,) = self.stores[1]._db.execute("SELECT count(*) FROM jobs").fetchone()
        assert stored == len(self.model)

    @invariant()
    def workers_table_matches_the_model(self) -> None:
        rows = {row.worker_id: row.heartbeat_at_us for row in self.stores[0].get_workers()}
        assert rows == self.heartbeats


# Built here, after conftest.py loaded the "dev" or "ci" profile, so max_examples comes from it.
# The "ci" profile runs this machine longer: with the features beyond DEP 0014 the rule set is
# large, and some bugs (a cancelled job retried after a failure) need ~1000 examples to show.
QueueMachine.TestCase.settings = settings(
    stateful_step_count=50,
    deadline=None,
    max_examples=1000 if os.environ.get("CI") else settings.default.max_examples,
)
TestQueueMachine = QueueMachine.TestCase


class _Drawn:
    """Stands for ``st.data()`` in a replay: every draw gives ``value``."""

    def __init__(self, value: str) -> None:
        self.value = value

    def draw(self, strategy: object) -> str:  # the one draw of the rule
        return self.value


def test_bad_rows_failed_by_one_claim_enqueue_their_hooks_in_claim_order() -> None:
    """The shrunk steps of a failure of this machine under the ``ci`` profile: one claim fails
    job-7 (priority 0) before job-2 (priority -100), and their failure hooks must come out of
    the next round in that order. The store failed them in seq order (job-2's hook first)."""

    def spec(priority: int, key: str | None = None, *hooks: str) -> dict[str, Any]:
        return {
            "priority": priority,
            "queue_name": "default",
            "delay_us": None,
            "max_attempts": 1,
            "unique_key": key,
            "hooks": list(hooks),
        }

    bad = ("errors", "'[bad'", None)
    machine = QueueMachine()
    try:
        machine.enqueue_bulk(
            [spec(-100), spec(-100, None, "success", "failure"), spec(-100, "k1")], 0
        )
        machine.enqueue_bulk([spec(-100), spec(0), spec(0), spec(-100, "k1")], 1)
        for job_id in ("job-1", "job-2"):
            machine.corrupt(_Drawn(job_id), bad, via=0)
        machine.claim("w1", None, limit=2, skip=set(), via=0)
        machine.enqueue_bulk(
            [spec(-100, "k1"), spec(-100, "k1"), spec(0, None, "success", "failure")], 0
        )
        machine.corrupt(_Drawn("job-7"), bad, via=0)
        machine.claim("w1", None, limit=3, skip=set(), via=0)
        machine.every_job_matches_the_model()
    finally:
        machine.teardown()
