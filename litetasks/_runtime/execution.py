"""Run one claimed job exactly as Django's ``ImmediateBackend`` runs a task.

The sequence: status RUNNING with ``started_at`` (first attempt) and ``last_attempted_at``, send
``task_started``, call the task (with a ``TaskContext`` when it takes one), normalise the return
value as JSON, map any exception to a ``TaskError``, and after the outcome is recorded send
``task_finished`` (for a failure, with the exception active, as inside an ``except`` block).
``KeyboardInterrupt`` is not swallowed.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._django.compat import (
    InvalidTask,
    TaskContext,
    TaskResult,
    task_finished,
    task_started,
)
from .._django.results import finished_result, running_result
from .._django.task import DEFAULT_BACKOFF, LiteTask
from .._django.values import MAX_JSON_DEPTH, dump_json, load_json, normalized_json
from .._store.clock import wall_clock_us
from .._store.records import ErrorRecord, JobRecord, Outcome
from .._store.rowlimits import ROW_MARGIN_BYTES
from ..exceptions import TaskCancelled, TaskNotAllowed, TaskNotFound, TaskTimeout
from .attempts import Finish

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend

__all__ = ["Finish", "TaskRunner"]

logger = logging.getLogger(__name__)

# Room a stored error leaves in its row for worker ids and times.
_ROW_RESERVE_BYTES = 4096


@dataclasses.dataclass(slots=True)
class _Started:
    """A task whose ``task_started`` was sent, ready to be called. Read-only by convention:
    not frozen, which would make building it (once a task) five times as slow."""

    job: JobRecord
    task: Any
    call_args: list[Any]
    kwargs: dict[str, Any]
    result: TaskResult
    started_us: int


class TaskRunner:
    """Run claimed jobs of one backend; safe to share between threads."""

    def __init__(
        self,
        backend: SQLiteBackend,
        worker_id: str,
        *,
        translate: Callable[[str, BaseException], BaseException] | None = None,
    ) -> None:
        self.backend = backend
        self.worker_id = worker_id
        self._sender = type(backend)
        self._is_async: dict[str, bool] = {}  # by task path
        # Maps what an interrupt raised in a task (a bare TaskTimeout class, a CancelledError)
        # to the exception to record: the worker pool's ``Interrupter.take``.
        self.translate = translate or _same
        # Task paths this worker did not find in its code lately, and until when (monotonic) it
        # leaves them to other workers: a worker that cannot run a task is always idle, and
        # would otherwise win every claim of it from the workers that can.
        self._not_here: dict[str, float] = {}

    def not_here(self) -> list[str]:
        """The task paths claims of this worker skip for now (see ``_not_found``)."""
        if not self._not_here:
            return []
        now = time.monotonic()
        for path, until in list(self._not_here.items()):
            if until <= now:
                self._not_here.pop(path, None)
        return list(self._not_here)

    def timeout_of(self, job: JobRecord) -> float | None:
        """The ``timeout`` of ``job``'s task, in seconds (None: none, or it cannot load)."""
        try:
            task = self.backend.task_for_job(job)
        except (TaskNotAllowed, InvalidTask):
            return None
        timeout = getattr(task, "timeout", None)
        return None if timeout is None else float(timeout)

    def interrupted(self, job: JobRecord, exc: BaseException) -> tuple[Outcome, Finish]:
        """The outcome of an attempt stopped from outside the task (an interrupt that landed
        after the task returned, a task that ignored its interrupt, or one cancelled before
        it started): FAILED, retried by the task's options, without signals."""
        started_us = job.last_attempted_at_us or wall_clock_us()
        try:
            task = self.backend.task_for_job(job)
            args, kwargs = _load_arguments(job)
        except (TaskNotAllowed, InvalidTask, ValueError):
            return self._outcome(job, started_us, error=self._error(job, exc)), _nothing
        result = running_result(task, job, args, kwargs, started_us, self.backend.alias)
        return self._complete(_Started(job, task, args, kwargs, result, started_us), exc=exc)

    def is_async(self, job: JobRecord) -> bool:
        """Whether ``job``'s task is a coroutine function (False if it cannot be loaded)."""
        known = self._is_async.get(job.task_path)
        if known is not None:
            return known
        try:
            is_async = inspect.iscoroutinefunction(self.backend.task_for_job(job).func)
        except (TaskNotAllowed, InvalidTask):
            return False
        self._is_async[job.task_path] = is_async
        return is_async

    def run(self, job: JobRecord) -> tuple[Outcome, Finish]:
        """Run ``job`` (already claimed by this worker) in this thread; return its outcome.

        Every exception of the task is the outcome. For ``KeyboardInterrupt`` the returned
        ``finish`` raises it again once the outcome is recorded: it is not swallowed.
        """
        started = self._start(job)
        if not isinstance(started, _Started):
            return started
        pid = os.getpid()
        try:
            raw = started.task.call(*started.call_args, **started.kwargs)
        except BaseException as exc:
            _end_forked_child(pid, job, exc)
            return self._complete(started, exc=exc)
        _end_forked_child(pid, job)
        return self._complete(started, raw=raw)

    async def arun(self, job: JobRecord) -> tuple[Outcome, Finish]:
        """Run ``job``'s coroutine task on the running event loop; as ``run`` otherwise."""
        started = self._start(job)
        if not isinstance(started, _Started):
            return started
        pid = os.getpid()
        try:
            raw = await started.task.acall(*started.call_args, **started.kwargs)
        except BaseException as exc:
            _end_forked_child(pid, job, exc)
            return self._complete(started, exc=exc)
        _end_forked_child(pid, job)
        return self._complete(started, raw=raw)

    def _start(self, job: JobRecord) -> _Started | tuple[Outcome, Finish]:
        """Load the task, send ``task_started``; or the outcome of a task that cannot start."""
        started_us = wall_clock_us()
        try:
            task = self.backend.task_for_job(job)
            args, kwargs = _load_arguments(job)
        except TaskNotFound as exc:  # another worker may have it: put back, or fail at last
            return self._not_found(job, started_us, exc), _nothing
        except (TaskNotAllowed, InvalidTask, ValueError) as exc:
            # The task cannot even start: FAILED with no signals, as no TaskResult can exist.
            logger.error("Task id=%s path=%s cannot run: %s", job.job_id, job.task_path, exc)
            return self._outcome(job, started_us, error=self._error(job, exc)), _nothing
        result = running_result(task, job, args, kwargs, started_us, self.backend.alias)
        _send(task_started, self._sender, result)
        call_args = [TaskContext(task_result=result), *args] if task.takes_context else args
        return _Started(job, task, call_args, kwargs, result, started_us)

    def _not_found(self, job: JobRecord, started_us: int, exc: TaskNotFound) -> Outcome:
        """Put ``job`` back to READY (after the next of ``OPTIONS["not_found_delays"]``), its
        attempt not counted, for a worker that has its task; after the last, FAILED saying
        what happened and what to do. No signals: no ``TaskResult`` can exist without the task.

        For twice that delay this worker's claims skip tasks of that path, so that a worker
        that has the task gets them (this one, unable to run them, is always free to claim).
        """
        delays = self.backend.config.not_found_delays_s
        if job.put_backs < len(delays):
            delay_s = delays[job.put_backs]
            if delay_s > 0:  # past the job's due time, so a worker that has it goes first
                self._not_here[job.task_path] = time.monotonic() + 2 * delay_s
            logger.warning(
                "Task id=%s path=%s is not in this worker's code (%s); put back to READY for a "
                "worker that has it, in %.1f s (put-back %d of %d)",
                job.job_id,
                job.task_path,
                exc,
                delay_s,
                job.put_backs + 1,
                len(delays),
            )
            now = wall_clock_us()
            return Outcome(
                job_id=job.job_id,
                worker_id=self.worker_id,
                attempt=job.attempts,
                started_at_us=started_us,
                finished_at_us=now,
                put_back_due_us=now + int(delay_s * 1_000_000),
            )
        final = TaskNotFound(
            not_found_message(job, exc, self.backend.alias, wall_clock_us()),
            task_path=exc.task_path,
            reason=exc.reason,
        )
        logger.error("Task id=%s path=%s cannot run: %s", job.job_id, job.task_path, final)
        return self._outcome(job, started_us, error=ErrorRecord.from_exception(final))

    def _complete(
        self, started: _Started, *, raw: Any = None, exc: BaseException | None = None
    ) -> tuple[Outcome, Finish]:
        """Turn a return value (JSON-normalised) or an exception into the outcome."""
        job, started_us = started.job, started.started_us
        if exc is None:
            if raw is None:  # the common case, and its JSON cannot be too big
                value, return_json = None, "null"
            else:
                try:
                    value = normalized_json(raw, "the return value")
                    return_json = dump_json(value)
                    self._check_size(job, return_json)
                except BaseException as not_json:  # a non-JSON return value fails the task
                    exc = not_json
        if exc is not None:
            exc = self.translate(job.job_id, exc)
        if isinstance(exc, KeyboardInterrupt):
            outcome = self._outcome(job, started_us, error=self._error(job, exc))
            return outcome, functools.partial(_reraise, exc)
        if exc is not None:  # SystemExit too, as ImmediateBackend does
            error = self._error(job, exc)
            retry_at_us = self._retry_at(started, exc)
            outcome = self._outcome(job, started_us, error=error, retry_at_us=retry_at_us)
            if retry_at_us is not None:
                # Not finished: READY again (unless cancelled meanwhile), so no task_finished.
                _log_retry(job, error, retry_at_us - outcome.finished_at_us)
                return outcome, _nothing
            failed = finished_result(started.result, outcome, error=error)
            return outcome, functools.partial(_send_failed, self._sender, failed, exc)
        outcome = self._outcome(job, started_us, return_json=return_json)
        done = finished_result(started.result, outcome, value=value)
        return outcome, functools.partial(_send_finished, self._sender, done)

    def _retry_at(self, started: _Started, exc: BaseException) -> int | None:
        """When a failed attempt runs again (µs since the epoch), or None if it does not."""
        task, job = started.task, started.job
        if not _retryable(task, job, exc):
            return None
        backoff = task.backoff or DEFAULT_BACKOFF
        try:
            delay = backoff(exc, started.result)
        except Exception:
            logger.exception("The backoff of task %s raised; not retrying", job.task_path)
            return None
        if delay is None:
            return None
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
            logger.error(
                "The backoff of task %s returned %r, not seconds >= 0 or None; not retrying",
                job.task_path,
                delay,
            )
            return None
        return wall_clock_us() + int(min(delay, 10 * 365 * 86400) * 1_000_000)

    def _check_size(self, job: JobRecord, return_json: str) -> None:
        """Fail a task whose return value would not fit in its row, rather than the commit
        that records it (and every other outcome of that commit) with it."""
        max_row_bytes = self.backend.max_row_bytes()
        row_bytes = len(return_json) + len(job.args_json) + len(job.kwargs_json)
        if row_bytes + ROW_MARGIN_BYTES > max_row_bytes:
            raise ValueError(
                f"The return value is {len(return_json):,} bytes of JSON, more than the queue "
                f"file's rows hold ({max_row_bytes:,} bytes). Store large results "
                "elsewhere (a file, the app database) and return their id or path."
            )

    def _error(self, job: JobRecord, exc: BaseException) -> ErrorRecord:
        """Describe ``exc``, its traceback cut in the middle if its row could not hold it.

        A row that cannot be written would fail the commit recording this outcome, and every
        other outcome of that commit, again and again.
        """
        error = ErrorRecord.from_exception(exc)
        text = error.traceback
        earlier = sum(len(json.dumps(e.traceback)) + 100 for e in job.errors)
        used = len(job.args_json) + len(job.kwargs_json) + earlier + _ROW_RESERVE_BYTES
        room = self.backend.max_row_bytes() - used
        if len(json.dumps(text)) <= room:
            return error
        keep = max(0, room // 12 - 200)  # an escaped character takes up to 12 bytes
        head, tail = text[: keep // 2], text[len(text) - (keep - keep // 2) :]
        cut = len(text) - len(head) - len(tail)
        return ErrorRecord(
            exception_class_path=error.exception_class_path,
            traceback=f"{head}\n[... {cut:,} characters cut: too long for the queue file ...]\n"
            f"{tail}",
        )

    def _outcome(self, job: JobRecord, started_us: int, **fields: Any) -> Outcome:
        return Outcome(
            job_id=job.job_id,
            worker_id=self.worker_id,
            attempt=job.attempts,
            started_at_us=started_us,
            finished_at_us=wall_clock_us(),
            has_hooks=bool(job.hooks),
            **fields,
        )


def _log_retry(job: JobRecord, error: ErrorRecord, delay_us: int) -> None:
    logger.warning(
        "Task id=%s path=%s attempt %d of %d failed (%s); retrying in %.1f s",
        job.job_id,
        job.task_path,
        job.attempts,
        job.max_attempts,
        error.exception_class_path,
        delay_us / 1e6,
    )


def _end_forked_child(pid: int, job: JobRecord, exc: BaseException | None = None) -> None:
    """End this process at once if it is not ``pid`` but a child the task forked.

    A forked child is a whole copy of the worker: left to return from the task, it would record
    its outcome as the attempt's (the parent's, the real one, would then be discarded) and go on
    claiming tasks as a second worker nobody supervises. Nothing of it is recorded.
    """
    if os.getpid() == pid:
        return
    code = 0 if exc is None else 1
    if isinstance(exc, SystemExit):  # sys.exit() in the child: its code stands
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    # A lock another thread held at the fork (a log handler's, a stream's) stays held here for
    # good: should logging block on one, SIGALRM (default action: terminate) ends the child.
    signal.alarm(5)
    try:
        logger.error(
            "Task id=%s path=%s %s in a process it forked (pid=%d; the worker is pid=%d): "
            "ending that process with code %d, recording nothing. A forked child must end "
            "with os._exit().",
            job.job_id,
            job.task_path,
            "returned" if exc is None else f"raised {type(exc).__name__}",
            os.getpid(),
            pid,
            code,
        )
    finally:
        os._exit(code)


_ONE_FILE = (
    "If another project uses this queue file, give each project its own file: one queue file "
    "belongs to one project."
)


def not_found_message(job: JobRecord, exc: TaskNotFound, alias: str, now_us: int) -> str:
    """The final error of a task the workers did not find: what happened, then what to do."""
    path, module, name = exc.task_path, *exc.task_path.rpartition(".")[::2]
    tried = _tried(job, now_us)
    restart = (
        "restart the workers (they load the code when they start), then "
        f"`litetasks retry {job.job_id}`."
    )
    if exc.reason == "outside":
        return (
            f"Task {path!r} is not in an installed app of the workers (INSTALLED_APPS, or "
            f"TASKS[{alias!r}]['OPTIONS']['task_modules']), so they did not import it "
            f"({tried}). {_ONE_FILE} If its app is new, add it to INSTALLED_APPS, {restart}"
        )
    if exc.reason == "import":
        cause = exc.__cause__
        return (
            f"Task {path!r} could not be imported by the workers: importing {module!r} raised "
            f"{cause!r} ({tried}). If the module is new or was fixed since, {restart} "
            f"{_ONE_FILE}"
        )
    if exc.reason == "missing":
        return (
            f"Task {path!r} was not found in the code the workers loaded: module {module!r} "
            f"has no {name!r} ({tried}). If it is new, {restart} {_ONE_FILE}"
        )
    return (
        f"Task {path!r} is not a task in the code the workers loaded: {name!r} is not "
        "decorated with @task there "
        f"({tried}). If that changed since they started, {restart} {_ONE_FILE}"
    )


def _tried(job: JobRecord, now_us: int) -> str:
    if job.put_backs == 0:
        return "tried once"
    since_us = job.first_put_back_at_us or now_us
    return f"tried {job.put_backs + 1} times by the workers over {_duration(now_us - since_us)}"


def _duration(us: int) -> str:
    seconds = max(0, round(us / 1_000_000))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _retryable(task: Any, job: JobRecord, exc: BaseException) -> bool:
    """Whether ``exc`` ending this attempt may be retried, by the task's options."""
    if not isinstance(task, LiteTask) or job.attempts >= job.max_attempts:
        return False
    if isinstance(exc, (TaskCancelled, *task.no_retry_on)):
        return False
    return isinstance(exc, (*task.retry_on, TaskTimeout))


def _load_arguments(job: JobRecord) -> tuple[list[Any], dict[str, Any]]:
    """Decode a row's arguments; raise ``ValueError`` unless they are a JSON array and object.

    ``task.call(*args, **kwargs)`` would accept other shapes (``*{"a": 1}`` passes the key), so a
    tampered row could otherwise run with arguments nobody enqueued.
    """
    args_json, kwargs_json = job.args_json, job.kwargs_json
    args = [] if args_json == "[]" else _load_stored(args_json, "the stored args")
    kwargs = {} if kwargs_json == "{}" else _load_stored(kwargs_json, "the stored kwargs")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError(
            "The stored arguments are malformed: args must be a JSON array and kwargs a JSON "
            f"object (got {type(args).__name__} and {type(kwargs).__name__})."
        )
    return args, kwargs


def _load_stored(text: str, where: str) -> Any:
    """``load_json(text, where, depth=-1)``, without its walk of the value when that cannot
    refuse it.

    Decoded JSON objects have only str keys, so the walk refuses only lists and dicts nested
    more than ``MAX_JSON_DEPTH`` deep, which take more brackets than that: text with fewer
    (counted in C, strings included) decodes to the same value, and fails the same way.
    """
    if text.count("[") + text.count("{") < MAX_JSON_DEPTH:
        return json.loads(text)
    return load_json(text, where, depth=-1)


def _same(job_id: str, exc: BaseException) -> BaseException:
    return exc


def _nothing(counted: bool) -> None:
    del counted


def _send(signal: Any, sender: type, result: TaskResult) -> None:
    # A receiver that raises must not take the worker down; log it where it can be seen.
    for receiver, response in signal.send_robust(sender, task_result=result):
        if isinstance(response, Exception):
            logger.error(
                "Signal receiver %r raised for task id=%s",
                receiver,
                result.id,
                exc_info=response,
            )


def _reraise(exc: BaseException, counted: bool) -> None:
    del counted
    raise exc


def _send_finished(sender: type, result: TaskResult, counted: bool) -> None:
    if counted:
        _send(task_finished, sender, result)


def _send_failed(sender: type, result: TaskResult, exc: BaseException, counted: bool) -> None:
    if not counted:
        return
    # Django sends task_finished for a failure inside the ``except`` block, so receivers (and
    # its logging) see the exception in sys.exc_info(); raising it again recreates that.
    try:
        raise exc
    except BaseException:
        _send(task_finished, sender, result)
