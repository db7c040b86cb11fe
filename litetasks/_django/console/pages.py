"""The console's read-only pages: overview, tasks, one task, workers, queues, periodic."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from ..._store.console import JobFilter
from ..._store.liveness import classify_workers, this_process
from ..._store.overview import MINUTE_US, Counts
from ..._store.records import JobRecord, JobState, WorkerRecord
from ...exceptions import ConfigurationError, JobNotFound
from ..backend import SQLiteBackend
from ..compat import InvalidTask
from .display import age, bar_chart, capped, finds_a_secret, moment, shown_json, summary_json

if TYPE_CHECKING:
    from .site import TaskAdmin

__all__ = ["detail", "overview", "periodic", "queues", "tasks", "workers"]

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
PAGE_SIZE = 50
STATES = [state.value for state in JobState]


def _render(
    admin: TaskAdmin,
    request: HttpRequest,
    template: str,
    backend: SQLiteBackend,
    title: str,
    **extra: Any,
) -> HttpResponse:
    context = admin.context(request, backend, title, **extra)
    return TemplateResponse(request, f"litetasks/console/{template}", context)


def lost_workers(backend: SQLiteBackend, workers: list[WorkerRecord], now_us: int) -> set[str]:
    """The ids of ``workers`` that are gone: a dead pid here, or a heartbeat past the lease."""
    dead, alive = classify_workers(workers, this_process())
    lease_us = backend.config.worker.lease_s * 1_000_000
    stale = {w.worker_id for w in workers if now_us - w.heartbeat_at_us > lease_us}
    return set(dead) | (stale - set(alive))


def _queue_rows(backend: SQLiteBackend, counts: Counts) -> list[dict[str, Any]]:
    store = backend.store
    oldest = store.console.oldest_due()
    now = store.now_us()
    paused = store.pausing.paused_queues()
    names = sorted(set(backend.queues or ()) | {queue for queue, _ in counts.by_queue} | paused)
    rows = []
    for name in names:
        by_state = {s.value: counts.by_queue.get((name, s), 0) for s in JobState}
        shown = {
            state: capped(n, counts.is_capped and JobState(state).is_finished)
            for state, n in by_state.items()
        }
        latency = age(oldest.get(name), now)
        rows.append(
            {"name": name, "counts": shown, "latency": latency, "is_paused": name in paused}
        )
    return rows


def _every_minute(found: list[tuple[int, int, int]], now_us: int) -> list[tuple[int, int, int]]:
    """``found`` (minutes with tasks) as every minute of the day up to ``now_us``."""
    by_minute = {minute: (ok, failed) for minute, ok, failed in found}
    last = now_us // MINUTE_US * MINUTE_US
    starts = range(last - DAY_US + MINUTE_US, last + MINUTE_US, MINUTE_US)
    return [(start, *by_minute.get(start, (0, 0))) for start in starts]


def _throughput(minutes: list[tuple[int, int, int]]) -> dict[str, Any]:
    hour = minutes[-60:]
    hours = [
        (chunk[0][0], sum(ok for _, ok, _ in chunk), sum(f for _, _, f in chunk))
        for chunk in (minutes[i : i + 60] for i in range(0, len(minutes), 60))
    ]
    result = {}
    for name, buckets in (("hour", hour), ("day", minutes)):
        ok = sum(b[1] for b in buckets)
        failed = sum(b[2] for b in buckets)
        result[name] = {
            "finished": ok + failed,
            "per_minute": round((ok + failed) / max(len(buckets), 1), 1),
            "failure_rate": f"{failed / (ok + failed):.1%}" if ok + failed else "-",
        }
    result["hour_chart"] = bar_chart(hour, label="Tasks finished per minute, last hour")
    result["day_chart"] = bar_chart(hours, label="Tasks finished per hour, last day")
    return result


def _schedules(backend: SQLiteBackend, now_us: int) -> tuple[list[dict[str, Any]], str]:
    from ..periodic import load_schedules

    try:
        schedules = load_schedules(backend)
    except (ConfigurationError, InvalidTask, ImportError) as exc:  # the page shows the rest
        return [], f"The periodic schedules cannot be read: {exc}"
    recorded = backend.store.schedules()
    paused = backend.store.pausing.paused_schedules()
    rows = []
    for name, schedule in sorted(schedules.items()):
        last_slot, last_job = recorded.get(name, (None, None))
        rows.append(
            {
                "name": name,
                "task": schedule.task_path,
                "expression": schedule.cron or f"every {timedelta(seconds=schedule.every_s or 0)}",
                "tz": str(schedule.tz),
                "last_slot": moment(last_slot),
                "last_job_id": last_job,
                "next_slot": moment(schedule.next_slot(now_us)),
                "is_paused": name in paused,
            }
        )
    return rows, ""


def overview(admin: TaskAdmin, request: HttpRequest) -> HttpResponse:
    backend = admin.backend_of(request)
    store = backend.store
    now = store.now_us()
    counts = store.console.counts()
    # The chart from the counters kept in the file (stats.py: they survive pruning); the
    # row-based overview.finished_per_minute() gives the same shape from the newest rows.
    minutes = _every_minute(store.counters.finished_per_minute(now - DAY_US), now)
    all_workers = store.get_workers()
    lost = lost_workers(backend, all_workers, now)
    registered = {w.worker_id for w in all_workers}
    stranded = sum(len(w.current_job_ids) for w in all_workers if w.worker_id in lost)
    unregistered = sorted(o for o in store.get_running_owners() if o not in registered)
    schedules, schedule_error = _schedules(backend, now)
    upcoming = sorted((s for s in schedules if s["next_slot"]), key=lambda s: s["next_slot"])
    return _render(
        admin,
        request,
        "overview.html",
        backend,
        "Tasks: overview",
        queues=_queue_rows(backend, counts),
        is_capped=counts.is_capped,
        throughput=_throughput(minutes),
        live_workers=len(registered - lost),
        lost_workers=len(lost),
        stranded=stranded,
        unregistered_owners=unregistered,
        schedules=upcoming[:5],
        schedule_error=schedule_error,
        live=True,
    )


def _parsed_time(text: str | None) -> int | None:
    """Microseconds from a ``datetime-local`` value, read in the current time zone."""
    if not text:
        return None
    try:
        moment_ = datetime.fromisoformat(text)
    except ValueError:
        return None
    if timezone.is_naive(moment_):
        moment_ = timezone.make_aware(moment_)
    return int(moment_.timestamp() * 1_000_000)


def job_filter(request: HttpRequest) -> JobFilter:
    """The tasks page's filter, from its query string (or a bulk action's form)."""
    data = request.POST if request.method == "POST" else request.GET
    state = data.get("state") or None
    return JobFilter(
        state=JobState(state) if state in STATES else None,
        queue_name=data.get("queue") or None,
        task_path=data.get("task") or None,
        since_us=_parsed_time(data.get("since")),
        until_us=_parsed_time(data.get("until")),
        job_id=(data.get("id") or "").strip() or None,
        text=data.get("q") or None,
    )


def _task_row(backend: SQLiteBackend, job: JobRecord) -> dict[str, Any]:
    return {
        "job": job,
        "enqueued_at": moment(job.enqueued_at_us),
        "finished_at": moment(job.finished_at_us),
        "arguments": summary_json(backend, job.args_json, job.kwargs_json),
    }


def tasks(admin: TaskAdmin, request: HttpRequest) -> HttpResponse:
    backend = admin.backend_of(request)
    store = backend.store
    chosen = job_filter(request)
    before = request.GET.get("before", "")
    upto = store.console.newest_seq()
    page = store.console.page(
        chosen, before=int(before) if before.isdigit() else None, limit=PAGE_SIZE
    )
    query = request.GET.copy()
    query.pop("before", None)
    older = None
    if page.next_before is not None:
        query["before"] = str(page.next_before)
        older = query.urlencode()
        query.pop("before")
    jobs = [job for _, job in page.jobs]
    if chosen.text:  # a match inside a hidden value would tell what the value is
        text = chosen.text
        jobs = [j for j in jobs if not finds_a_secret(backend, text, j.args_json, j.kwargs_json)]
    return _render(
        admin,
        request,
        "tasks.html",
        backend,
        "Tasks",
        rows=[_task_row(backend, job) for job in jobs],
        page=page,
        filter=request.GET,
        states=STATES,
        queue_names=sorted(backend.queues or ()),
        older=older,
        newest=query.urlencode(),
        is_first=not before,
        upto=upto,
        loaded_at=store.now_us(),
        live=not before,
    )


def detail(admin: TaskAdmin, request: HttpRequest, job_id: str) -> HttpResponse:
    backend = admin.backend_of(request)
    try:
        job = backend.store.get(job_id)
    except JobNotFound:
        raise Http404(f"No task {job_id!r} in {backend.config.store.path}.") from None
    times = [
        ("Enqueued", job.enqueued_at_us),
        ("Run after", job.run_after_us),
        ("Started", job.started_at_us),
        ("Last attempted", job.last_attempted_at_us),
        ("Finished", job.finished_at_us),
        ("First put back", job.first_put_back_at_us),
    ]
    return _render(
        admin,
        request,
        "detail.html",
        backend,
        f"Task {job.job_id}",
        job=job,
        times=[(label, moment(us)) for label, us in times],
        args=shown_json(backend, job.args_json),
        kwargs=shown_json(backend, job.kwargs_json),
        return_value=None if job.return_json is None else shown_json(backend, job.return_json),
        errors=list(enumerate(job.errors, start=1)),
        live=not job.state.is_finished,
    )


def workers(admin: TaskAdmin, request: HttpRequest) -> HttpResponse:
    backend = admin.backend_of(request)
    store = backend.store
    now = store.now_us()
    found = store.get_workers()
    lost = lost_workers(backend, found, now)
    rows = [
        {
            "worker": w,
            "queues": ", ".join(w.queues) if w.queues is not None else "all",
            "heartbeat_age": age(w.heartbeat_at_us, now),
            "started_at": moment(w.started_at_us),
            "is_lost": w.worker_id in lost,
        }
        for w in found
    ]
    return _render(admin, request, "workers.html", backend, "Tasks: workers", rows=rows, live=True)


def queues(admin: TaskAdmin, request: HttpRequest) -> HttpResponse:
    backend = admin.backend_of(request)
    counts = backend.store.console.counts()
    return _render(
        admin,
        request,
        "queues.html",
        backend,
        "Tasks: queues",
        queues=_queue_rows(backend, counts),
        is_capped=counts.is_capped,
        states=STATES,
        live=True,
    )


def periodic(admin: TaskAdmin, request: HttpRequest) -> HttpResponse:
    backend = admin.backend_of(request)
    rows, error = _schedules(backend, backend.store.now_us())
    return _render(
        admin,
        request,
        "periodic.html",
        backend,
        "Tasks: periodic schedules",
        schedules=rows,
        schedule_error=error,
    )
