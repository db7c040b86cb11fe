"""The vocabulary shared by the store, the worker and the backend: plain values, stdlib only."""

from __future__ import annotations

import enum
import traceback
from dataclasses import dataclass, field

__all__ = [
    "ErrorRecord",
    "Hook",
    "JobRecord",
    "JobState",
    "NewJob",
    "Outcome",
    "WorkerRecord",
]


class JobState(str, enum.Enum):
    """The state of a stored job; the values are Django's ``TaskResultStatus`` values."""

    READY = "READY"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    SUCCESSFUL = "SUCCESSFUL"
    # Moved to another backend by ``litetasks forward``: final here; its result is the target's.
    FORWARDED = "FORWARDED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_finished(self) -> bool:
        return self in (JobState.FAILED, JobState.SUCCESSFUL)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRecord:
    """One failed attempt: the exception's class path and its formatted traceback."""

    exception_class_path: str
    traceback: str

    @property
    def is_keyboard_interrupt(self) -> bool:
        return self.exception_class_path == "builtins.KeyboardInterrupt"

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorRecord:
        """Describe ``exc`` as Django's ``TaskError`` does, even if its ``__str__`` raises."""
        kind = type(exc)
        path = f"{kind.__module__}.{kind.__qualname__}"
        try:
            text = "".join(traceback.format_exception(exc))
        except Exception:  # an exception whose __str__ raises must still be recorded
            text = f"{path}: <str() of this exception raised an error>\n"
        return cls(exception_class_path=path, traceback=text)


@dataclass(slots=True, kw_only=True)
class NewJob:
    """A job to enqueue. Times are integer microseconds since the Unix epoch (UTC).

    ``args_json`` and ``kwargs_json`` are JSON text, already validated by the caller.
    Not frozen: a frozen dataclass sets each field through ``object.__setattr__``, which made
    building one cost three times as much (1.7 µs, a quarter of a bulk enqueue per row).
    """

    job_id: str
    task_path: str
    queue_name: str = "default"
    priority: int = 0
    args_json: str = "[]"
    kwargs_json: str = "{}"
    run_after_us: int | None = None
    max_attempts: int = 1
    unique_key: str | None = None
    hooks: tuple[Hook, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Hook:
    """A task to enqueue when a job finishes: ``when`` is ``success``, ``failure`` or ``finish``.

    The hook task is called with one argument: the finished job's id.
    """

    when: str
    task_path: str
    queue_name: str = "default"
    priority: int = 0
    max_attempts: int = 1

    def fires_on(self, state: JobState) -> bool:
        if self.when == "finish":
            return state.is_finished
        return state is (JobState.SUCCESSFUL if self.when == "success" else JobState.FAILED)


@dataclass(slots=True)
class JobRecord:
    """A stored job, as read back from the queue file. Read-only by convention.

    Not ``frozen``: one is built for every claimed job, and a frozen dataclass's ``__init__``
    (``object.__setattr__`` per field) takes 3 µs of the 5 µs that costs; nothing assigns to one.
    Its fields up to ``first_put_back_at_us`` are the columns of ``sql.JOB_COLUMN_NAMES`` in
    their order, so that a row builds one by position (``rows.decode_job``, the fastest way).
    """

    job_id: str
    task_path: str
    queue_name: str
    priority: int
    args_json: str
    kwargs_json: str
    state: JobState
    enqueued_at_us: int
    run_after_us: int | None
    started_at_us: int | None
    last_attempted_at_us: int | None
    finished_at_us: int | None
    worker_ids: tuple[str, ...]
    errors: tuple[ErrorRecord, ...]
    return_json: str | None
    attempts: int
    max_attempts: int
    owner: str | None
    unique_key: str | None = None
    cancel_requested: bool = False
    hooks: tuple[Hook, ...] = ()
    # How many times workers put it back, not finding its task in their code, since when.
    put_backs: int = 0
    first_put_back_at_us: int | None = None
    # Values of the row litetasks did not write and cannot read, as (column, what is wrong);
    # each was replaced by a harmless one above. A worker fails such a job when it claims it.
    malformed: tuple[tuple[str, str], ...] = ()

    @property
    def due_at_us(self) -> int:
        return self.enqueued_at_us if self.run_after_us is None else self.run_after_us


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The result of running one claimed attempt, ready to be recorded.

    Exactly one of ``return_json`` (success), ``error`` (failure) and ``put_back_due_us`` (task
    not found, see ``TaskNotFound``) is set. ``started_at_us`` is when the attempt really
    started, which can be later than the claim when jobs are prefetched. A failure with
    ``retry_at_us`` set goes back to READY then, if attempts remain.
    """

    job_id: str
    worker_id: str
    attempt: int
    started_at_us: int
    finished_at_us: int
    return_json: str | None = None
    error: ErrorRecord | None = None
    retry_at_us: int | None = None
    # Whether the job has hooks (known to whoever ran it); None: not known. A success known to
    # have none can be recorded in a batch that reports no hooks back.
    has_hooks: bool | None = None
    # Neither a success nor a failure: the worker did not find the task in its code, and puts
    # the job back to READY, due then, its attempt not counted (see TaskNotFound).
    put_back_due_us: int | None = None

    @property
    def is_success(self) -> bool:
        return self.error is None and self.put_back_due_us is None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRecord:
    """A worker process as registered in the queue file.

    ``boot_id`` and ``proc_start`` (the kernel's boot id and the process start time in clock
    ticks) let a process on the same host tell a live worker from a reused pid;
    ``pid_namespace`` says which pids ``pid`` is one of ("": unknown, judged by heartbeat);
    ``threads`` is how many executor threads it runs (None: unknown, a row of older code).
    """

    worker_id: str
    pid: int
    host: str
    boot_id: str
    proc_start: int
    queues: tuple[str, ...] | None
    started_at_us: int
    heartbeat_at_us: int
    pid_namespace: str = ""
    threads: int | None = None
    current_job_ids: tuple[str, ...] = field(default=())
