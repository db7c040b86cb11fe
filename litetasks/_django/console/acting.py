"""The console's actions: retry, cancel and delete tasks (one, the selected, or every task a
filter matched), and run a periodic schedule now.

Actions take POST only (with the admin's CSRF check); each is allowed by one permission and
goes through the same store operations as the command line (``Store.retry``, ``Store.cancel``,
``Store.delete``). A bulk action first shows a confirmation page with the ids it will touch:
those the filter matched when the tasks page was loaded (``upto``: its newest row, and for
finished tasks ``loaded_at``), never tasks that arrived or failed afterwards. Each action is
written to the admin's history (``LogEntry``) and to the log.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme

from ..._store.console import BULK_LIMIT
from ..._store.records import JobState
from ...exceptions import ConfigurationError
from ..backend import SQLiteBackend
from .pages import job_filter
from .site import ACT, DELETE

if TYPE_CHECKING:
    from .site import TaskAdmin

__all__ = ["act", "pause", "run_now"]

logger = logging.getLogger("litetasks.console")

# action -> (verb shown, permission, the state a filter-wide action takes).
ACTIONS: dict[str, tuple[str, str, JobState | None]] = {
    "retry": ("retry", ACT, None),
    "cancel": ("cancel", ACT, None),
    "delete": ("delete", DELETE, None),
    "retry_matching": ("retry", ACT, JobState.FAILED),
    "cancel_matching": ("cancel", ACT, JobState.READY),
}


def act(admin: TaskAdmin, request: HttpRequest) -> HttpResponse:
    """Confirm, then perform, an action on tasks."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    action = request.POST.get("action", "")
    if action not in ACTIONS:
        return HttpResponse(f"Unknown action {action!r}.", status=400)
    verb, permission, matching = ACTIONS[action]
    if not request.user.has_perm(permission):
        raise PermissionDenied
    backend = admin.backend_of(request)
    ids = _snapshot(backend, request, matching) if matching else _posted_ids(request)
    if not ids:
        messages.warning(request, "No task was selected: nothing was done.")
        return _back(admin, request, backend)
    if request.POST.get("confirmed") != "yes":
        return _confirm(admin, request, backend, verb, ids)
    results = _perform(backend, verb, ids)
    _record(request, backend, verb, results)
    summary = _summary(results)
    messages.success(request, f"{verb.capitalize()}: {summary}.")
    return _back(admin, request, backend)


def _posted_ids(request: HttpRequest) -> list[str]:
    """The ids ticked (``ids``, one field each) or confirmed (``id_list``: one field, one id
    a line, since Django refuses a form of more than 1,000 fields)."""
    listed = request.POST.get("id_list", "").split()
    return list(dict.fromkeys([*request.POST.getlist("ids"), *listed]))


def _snapshot(backend: SQLiteBackend, request: HttpRequest, state: JobState) -> list[str]:
    upto = request.POST.get("upto", "")
    loaded_at = request.POST.get("loaded_at", "")
    if not upto.isdigit():
        return []
    finished_by = int(loaded_at) if loaded_at.isdigit() and state.is_finished else None
    return backend.store.console.matching_ids(
        job_filter(request), state=state, upto_seq=int(upto), finished_by_us=finished_by
    )


def _confirm(
    admin: TaskAdmin, request: HttpRequest, backend: SQLiteBackend, verb: str, ids: list[str]
) -> HttpResponse:
    context = admin.context(
        request,
        backend,
        f"{verb.capitalize()} {len(ids):,} task{'s' if len(ids) != 1 else ''}?",
        verb=verb,
        ids=ids,
        id_list="\n".join(ids),
        shown_ids=ids[:20],
        is_limited=len(ids) >= BULK_LIMIT,
        limit=BULK_LIMIT,
        next=_next(request, admin, backend),
    )
    return TemplateResponse(request, "litetasks/console/confirm.html", context)


def _perform(backend: SQLiteBackend, verb: str, ids: list[str]) -> dict[str, str]:
    if verb == "retry":
        return backend.retry(ids)
    if verb == "cancel":
        return {job_id: str(result) for job_id, result in backend.cancel(ids).items()}
    return backend.store.delete(ids)


def _summary(results: dict[str, str]) -> str:
    tally: dict[str, int] = {}
    for outcome in results.values():
        tally[outcome] = tally.get(outcome, 0) + 1
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(tally.items()))


def _record(
    request: HttpRequest, backend: SQLiteBackend, verb: str, results: dict[str, str]
) -> None:
    """Write the action to the admin's history (one entry per task) and to the log."""
    content_type = ContentType.objects.get_by_natural_key("litetasks", "task")
    flag = DELETION if verb == "delete" else CHANGE
    message = json.dumps([{"changed": {"fields": [verb]}}])
    LogEntry.objects.bulk_create(
        LogEntry(
            user_id=request.user.pk,
            content_type=content_type,
            object_id=job_id,
            object_repr=f"{job_id} ({backend.alias}): {verb} -> {outcome}"[:200],
            action_flag=flag,
            change_message=message,
        )
        for job_id, outcome in results.items()
    )
    logger.info(
        "Console action=%s backend=%s user=%s tasks=%s results=%s",
        verb,
        backend.alias,
        request.user.get_username(),
        len(results),
        _summary(results),
    )


def _next(request: HttpRequest, admin: TaskAdmin, backend: SQLiteBackend) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return str(target)
    return admin.url("tasks", backend)


def _back(admin: TaskAdmin, request: HttpRequest, backend: SQLiteBackend) -> HttpResponse:
    return HttpResponseRedirect(_next(request, admin, backend), status=303)


def run_now(admin: TaskAdmin, request: HttpRequest) -> HttpResponse:
    """Enqueue a periodic schedule's task now, with its arguments (its slots do not move)."""
    from ..periodic import load_schedules

    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm(ACT):
        raise PermissionDenied
    backend = admin.backend_of(request)
    name = request.POST.get("name", "")
    try:
        schedule = load_schedules(backend).get(name)
    except ConfigurationError as exc:
        messages.error(request, str(exc))
        return _back(admin, request, backend)
    if schedule is None:
        messages.error(request, f"There is no periodic schedule named {name!r}.")
        return _back(admin, request, backend)
    task: Any = backend.import_task(schedule.task_path)
    result = task.enqueue(*schedule.args, **dict(schedule.kwargs))
    _record(request, backend, f"run {name} now", {result.id: "enqueued"})
    messages.success(request, f"Enqueued {schedule.task_path} as task {result.id}.")
    return _back(admin, request, backend)


def pause(admin: TaskAdmin, request: HttpRequest) -> HttpResponse:
    """Pause or resume a queue or a periodic schedule (``Store.pausing``)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm(ACT):
        raise PermissionDenied
    backend = admin.backend_of(request)
    kind, verb, name = (request.POST.get(k, "") for k in ("kind", "verb", "name"))
    store = backend.store
    operations = {
        ("queue", "pause"): store.pausing.pause_queue,
        ("queue", "resume"): store.pausing.resume_queue,
        ("schedule", "pause"): store.pausing.pause_schedule,
        ("schedule", "resume"): store.pausing.resume_schedule,
    }
    operation = operations.get((kind, verb))
    if operation is None or not name:
        return HttpResponse("Give kind (queue or schedule), verb (pause or resume), name.", 400)
    changed = operation(name)
    _record(request, backend, f"{verb} {kind}", {name: "done" if changed else "unchanged"})
    state = f"{verb}d" if changed else f"already {verb}d"
    messages.success(request, f"The {kind} {name!r} is {state}.")
    return _back(admin, request, backend)
