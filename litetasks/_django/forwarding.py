"""``backend.forward()``: move tasks that have not started to another backend alias.

Each READY task (due now, deferred, or waiting for a retry) is enqueued on the target through
Django's public API, ``task.using(backend=..., queue_name=..., priority=..., run_after=...)``
and ``enqueue(*args, **kwargs)``, then marked FORWARDED with the target's result id; a task the
target refuses stays READY and is reported with the reason, as is a row litetasks cannot read
(written by other code: it is left as it is). RUNNING tasks are left alone.

Crash safety (``_store/forwarding.py``): the forward takes a batch (READY -> FORWARDED, under
way), enqueues each task and marks it in its own transaction. A rerun takes what a killed
forward left under way first. When the target's ids are chosen by litetasks (django-tasks-db
with ``OPTIONS["id_function"] = "litetasks.backend.forward_id"``), the rerun finds the task on
the target by that id and nothing reaches it twice; otherwise the one task enqueued but not yet
marked when the forward died is enqueued again (at most one duplicate per interruption).
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._store.forwarding import Taken
from .._store.records import JobRecord, JobState
from .._store.unreadable import Unreadable
from ..exceptions import TaskNotAllowed, TaskNotFound
from .compat import InvalidTask, InvalidTaskBackend, Task, TaskResultDoesNotExist, task_backends
from .results import from_us

if TYPE_CHECKING:
    from .backend import SQLiteBackend
    from .compat import BaseTaskBackend, TaskResult

__all__ = ["FORWARD_ID_PATH", "ForwardReport", "forward", "forward_id", "forwarded_result"]

FORWARD_ID_PATH = "litetasks.backend.forward_id"
_chosen: contextvars.ContextVar[str | None] = contextvars.ContextVar("litetasks_forward_id")


def forward_id() -> uuid.UUID:
    """An id function for django-tasks-db (``OPTIONS["id_function"]``): the id ``litetasks
    forward`` chose for the task it is enqueueing, else a new random UUID (its default)."""
    chosen = _chosen.get(None)
    return uuid.uuid4() if chosen is None else uuid.UUID(chosen)


@dataclass(slots=True)
class ForwardReport:
    """What a forward did (or, with ``dry_run``, would do)."""

    target: str
    moved: dict[tuple[str, str], int] = field(default_factory=dict)  # (task, queue) -> count
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (job id, task, reason)
    not_carried: dict[str, set[str]] = field(default_factory=dict)  # task -> what is lost
    resumed: int = 0  # tasks a killed forward left under way
    chooses_ids: bool = False
    elapsed_s: float = 0.0

    @property
    def moved_count(self) -> int:
        return sum(self.moved.values())


def chooses_ids(target: BaseTaskBackend) -> bool:
    """Whether litetasks picks the target's result ids (``forward_id`` is its id function)."""
    function = target.options.get("id_function") if isinstance(target.options, dict) else None
    return function is forward_id or function == FORWARD_ID_PATH


def target_backend(alias: str, source: SQLiteBackend) -> BaseTaskBackend:
    """The backend of ``alias``, refused with ``InvalidTaskBackend`` if it is ``source``'s."""
    if alias == source.alias:
        raise InvalidTaskBackend(
            f"Cannot forward tasks of {alias!r} to itself: name another alias."
        )
    return task_backends[alias]  # raises InvalidTaskBackend naming an unknown alias


def forward(
    source: SQLiteBackend,
    alias: str,
    *,
    queues: Collection[str] | None = None,
    tasks: Collection[str] | None = None,
    batch: int = 500,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ForwardReport:
    """Move every READY task of ``source`` (of ``queues`` and ``tasks``, if given) to ``alias``."""
    target = target_backend(alias, source)
    report = ForwardReport(target=alias, chooses_ids=chooses_ids(target))
    if dry_run:
        _dry_run(source, target, report, queues, tasks)
        return report
    new_id = (lambda: str(uuid.uuid4())) if report.chooses_ids else (lambda: None)
    started = time.monotonic()
    skip: set[int] = set()  # the seqs of rows refused: the next batches leave them out
    while True:
        taken = source.store.forwarding.take(
            alias, limit=batch, queues=queues, tasks=tasks, new_id=new_id, skip=skip
        )
        if not (taken.taken or taken.unreadable):
            report.elapsed_s = time.monotonic() - started
            return report
        _refuse_unreadable(report, taken.unreadable, progress)
        _forward_batch(source, target, taken.taken, report, progress)
        refused = {job_id for job_id, _, _ in report.refused}
        skip.update(row.seq for row in taken.unreadable)
        skip.update(item.seq for item in taken.taken if item.job.job_id in refused)


def _dry_run(
    source: SQLiteBackend,
    target: BaseTaskBackend,
    report: ForwardReport,
    queues: Collection[str] | None,
    tasks: Collection[str] | None,
) -> None:
    jobs, unreadable = source.store.forwarding.ready(queues=queues, tasks=tasks)
    _refuse_unreadable(report, unreadable, None)
    for job in jobs:
        try:
            _prepare_and_note(source, target, job, report)
        except _Refused:
            continue
        _count(report, job)


def _refuse_unreadable(
    report: ForwardReport, rows: list[Unreadable], progress: Callable[[int], None] | None
) -> None:
    """Report the rows a forward left as they are: they hold values litetasks cannot read."""
    report.refused += [(row.job_id, row.task_path, row.reason) for row in rows]
    if progress is not None and rows:
        progress(len(rows))


def _forward_batch(
    source: SQLiteBackend,
    target: BaseTaskBackend,
    taken: list[Taken],
    report: ForwardReport,
    progress: Callable[[int], None] | None,
) -> None:
    remaining = iter(taken)
    try:
        for item in remaining:
            _forward_one(source, target, item, report)
            if progress is not None:
                progress(1)
    except BaseException:
        # The target failed (down, full): what this forward has not enqueued goes back.
        for item in remaining:
            source.store.forwarding.give_back(item.job.job_id)
        raise


def _forward_one(
    source: SQLiteBackend, target: BaseTaskBackend, item: Taken, report: ForwardReport
) -> None:
    job = item.job
    report.resumed += item.resumed
    try:
        task, args, kwargs = _prepare_and_note(source, target, job, report)
    except _Refused:
        source.store.forwarding.give_back(job.job_id)
        return
    found = _already_on_target(target, item.chosen_id) if item.resumed else None
    if found is None:
        token = _chosen.set(item.chosen_id)
        try:
            found = task.enqueue(*args, **kwargs).id
        except InvalidTask as exc:
            source.store.forwarding.give_back(job.job_id)
            report.refused.append((job.job_id, job.task_path, str(exc)))
            return
        finally:
            _chosen.reset(token)
    source.store.forwarding.mark(job.job_id, str(found))
    _count(report, job)


def _count(report: ForwardReport, job: JobRecord) -> None:
    key = (job.task_path, job.queue_name)
    report.moved[key] = report.moved.get(key, 0) + 1


class _Refused(Exception):
    pass


def _already_on_target(target: BaseTaskBackend, chosen_id: str | None) -> str | None:
    if chosen_id is None:
        return None
    try:
        return str(target.get_result(chosen_id).id)
    except TaskResultDoesNotExist:
        return None


def _prepare_and_note(
    source: SQLiteBackend, target: BaseTaskBackend, job: JobRecord, report: ForwardReport
) -> tuple[Task, list[Any], dict[str, Any]]:
    """The target's task for ``job`` and its arguments; raise ``_Refused`` (reported) if the
    target cannot take it, and note what of it the target does not carry."""
    try:
        task = _task_to_forward(source, job.task_path)
        target_task = task.using(
            backend=target.alias,
            queue_name=job.queue_name,
            priority=job.priority,
            run_after=from_us(job.run_after_us),
        )
        args, kwargs = json.loads(job.args_json), json.loads(job.kwargs_json)
    except (InvalidTask, TaskNotAllowed, TaskNotFound, ValueError) as exc:
        report.refused.append((job.job_id, job.task_path, str(exc)))
        raise _Refused from exc
    lost = set(_not_carried(task, job))
    if lost:
        report.not_carried.setdefault(job.task_path, set()).update(lost)
    return target_task, args, kwargs


def _task_to_forward(source: SQLiteBackend, task_path: str) -> Task:
    """The ``Task`` a row names, also when it now belongs to another alias: a site that made
    the target its default forwards what is left afterwards (the module was allowed and
    imported by ``import_task`` already)."""
    try:
        return source.import_task(task_path)
    except TaskNotFound as exc:
        if exc.reason != "backend":
            raise
    module_name, _, name = task_path.rpartition(".")
    task: Task = getattr(sys.modules[module_name], name)
    return task


def _not_carried(task: Task, job: JobRecord) -> Iterator[str]:
    """What litetasks would do for ``job`` that another backend will not."""
    if job.max_attempts > 1:
        yield f"retries (max_attempts={job.max_attempts})"
    if job.attempts:
        yield "the attempts left to tasks waiting for a retry (each runs once there)"
    for option in ("timeout", "unique"):
        if getattr(task, option, None):
            yield option
    if job.hooks:
        yield "completion hooks"


def forwarded_result(source: SQLiteBackend, job: JobRecord) -> TaskResult:
    """The current result of a FORWARDED job: the target's (``get_result`` of an old id).

    A job a forward took but has not marked yet is still READY here. Raises
    ``TaskResultDoesNotExist`` when the target alias is gone from settings or has no such
    result (pruned there).
    """
    try:
        where = source.store.forwarding.forwarded(job.job_id)
    except ValueError as exc:  # a row another program wrote
        raise InvalidTask(f"Result {job.job_id!r} cannot be loaded: {exc}") from None
    if where is None or where.target_id is None or where.forwarded_at_us is None:
        ready = dataclasses.replace(job, state=JobState.READY)
        return source.result_from_job(source.task_for_job(job), ready)
    try:
        target = task_backends[where.target]
    except InvalidTaskBackend:
        raise TaskResultDoesNotExist(
            f"Result {job.job_id!r} was forwarded to backend {where.target!r} (as "
            f"{where.target_id!r}), which is not in TASKS any more: add it back to read it."
        ) from None
    return target.get_result(where.target_id)
