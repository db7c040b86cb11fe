"""``litetasks demo``: a throwaway Django project, a mixed batch of tasks, a real worker, a report.

Everything happens in a temporary folder, removed at the end unless ``--keep``: the project's
settings and ``demoapp/tasks.py`` are written there as text, the queue file lives there, and the
real worker pool runs on threads of this process while the main thread draws the progress bar.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import secrets
import shutil
import statistics
import string
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import apsw
import django
from django.conf import settings
from django.utils import timezone
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.syntax import Syntax
from rich.table import Table

from .._django.backend import SQLiteBackend
from .._django.compat import FRAMEWORK
from .._runtime.supervisor import build_pool
from .._store.records import JobState
from ..exceptions import LiteTasksError
from .bootstrap import get_backend

__all__ = ["DEFAULT_TASKS", "MIN_TASKS", "Call", "build_plan", "run_demo"]

DEFAULT_TASKS = 2000
DEFERRED = 5  # send_reminder tasks, enqueued with run_after = now + DEFER_S
DEFER_S = 2.0
MIN_TASKS = DEFERRED + 5  # room for one task of every other kind
SETTINGS_MODULE = "demoproject.settings"
_POLL_S = 0.1
_STALL_S = 30.0  # no task finished for this long: something is wrong, give up
_SENTENCES = ("Simple is better than complex.", "Now is better than never.", "Be brief.")
# The batch, in the order the header lists it.
_KINDS = {
    "count_words": "",
    "send_welcome_email": " (async)",
    "charge_card": " (fails)",
    "send_reminder": f" (deferred {DEFER_S:g} s)",
    "report_attempt": " (takes_context)",
    "page_on_call": " (priority 10)",
    "compact_archive": " (priority -10)",
}

_SETTINGS_PY = string.Template('''\
"""Settings of the throwaway project that `litetasks demo` built."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "$secret_key"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["litetasks", "demoapp"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
TASKS = {
    "default": {
        "BACKEND": "litetasks.backend.SQLiteBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"path": BASE_DIR / "tasks.sqlite3"},
    }
}
''')

_TASKS_PY = string.Template('''\
"""The demo's tasks: what an app's tasks.py looks like with litetasks."""

import asyncio

from $framework import task


class PaymentDeclined(Exception):
    """Raised by charge_card."""


@task  # the fast, successful bulk of the batch
def count_words(text: str) -> int:
    return len(text.split())


@task(queue_name="emails", priority=5)  # async: the worker runs it on an event loop
async def send_welcome_email(address: str) -> str:
    await asyncio.sleep(0.001)
    return f"welcome email sent to {address}"


@task  # enqueued with .using(run_after=...): it waits until it is due
def send_reminder(user_id: int) -> str:
    return f"reminder sent to user {user_id}"


@task  # always fails: the exception is stored in result.errors
def charge_card(order_id: int) -> None:
    raise PaymentDeclined(f"card for order {order_id} was declined")


@task(takes_context=True)  # gets a TaskContext: it can see its own result
def report_attempt(context) -> dict:
    return {"result_id": context.task_result.id, "attempt": context.attempt}


@task(priority=10)  # runs before everything else that is due
def page_on_call(incident: str) -> str:
    return f"paged on-call about {incident}"


@task(priority=-10)  # runs when nothing more important is due
def compact_archive(day: str) -> str:
    return f"archive of {day} compacted"
''')

_NEXT_STEPS = string.Template("""\
# settings.py
INSTALLED_APPS = [..., "litetasks"]
TASKS = {"default": {"BACKEND": "litetasks.backend.SQLiteBackend"}}

# yourapp/tasks.py
from $framework import task

@task
def send_invoice(order_id: int) -> None: ...

# in a view, or anywhere else
result = send_invoice.enqueue(order_id=42)
""")


class _DemoError(LiteTasksError):
    """The demo could not finish; the message says why."""


@dataclass(frozen=True, slots=True)
class Call:
    """One task of the batch: a ``demoapp.tasks`` task name, its arguments and its delay."""

    task_name: str
    args: tuple[Any, ...] = ()
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Report:
    """The finished batch, read back through ``get_result``, and the enqueue time."""

    results: dict[str, list[Any]]  # task name -> its TaskResults, in enqueue order
    enqueue_s: float

    @property
    def everything(self) -> list[Any]:
        return [result for results in self.results.values() for result in results]

    @property
    def immediate(self) -> list[Any]:
        """The results that were due at once (all but the deferred ones)."""
        return [r for r in self.everything if r.task.run_after is None]

    def first(self, task_name: str) -> Any:
        return self.results[task_name][0]


def build_plan(total: int) -> list[Call]:
    """Return ``total`` calls in enqueue order: the low priority one first, the high one last.

    Of 2000: 1962 count_words, 20 async send_welcome_email, 10 failing charge_card, 5 deferred
    send_reminder, and one each of report_attempt, page_on_call and compact_archive.
    """
    middle = [
        *(Call("charge_card", (1000 + i,)) for i in range(max(1, total // 200))),
        *(Call("send_reminder", (i,), DEFER_S) for i in range(DEFERRED)),
        *(Call("send_welcome_email", (f"user{i}@example.com",)) for i in range(total // 100 or 1)),
        Call("report_attempt"),
    ]
    middle += [Call("count_words", (_SENTENCES[i % 3],)) for i in range(total - len(middle) - 2)]
    random.Random(total).shuffle(middle)
    return [Call("compact_archive", ("2026-01-01",)), *middle, Call("page_on_call", ("db-1",))]


# -- the throwaway project --------------------------------------------------------------------


def _write_project(root: Path, framework: str) -> None:
    files = {
        "demoproject/__init__.py": "",
        "demoproject/settings.py": _SETTINGS_PY.substitute(secret_key=secrets.token_urlsafe(32)),
        "demoapp/__init__.py": "",
        "demoapp/tasks.py": _TASKS_PY.substitute(framework=framework),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text(text)


def _setup_django(root: Path) -> SQLiteBackend:
    """Point Django at the demo project, whatever DJANGO_SETTINGS_MODULE said, and set it up."""
    sys.path.insert(0, str(root))
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    django.setup()
    backend: SQLiteBackend = get_backend("default")
    return backend


def _leave(root: Path, console: Console, *, keep: bool) -> None:
    """Remove the project folder, or say how to look at it."""
    if str(root) in sys.path:
        sys.path.remove(str(root))
    if keep:
        console.print(
            f"Kept the demo project in {root}\n  inspect it: litetasks status --settings "
            f"{SETTINGS_MODULE} --pythonpath {root}\n  its tasks:  {root}/demoapp/tasks.py\n"
            f"  remove it:  rm -r {root}",
            soft_wrap=True,
        )
        return
    try:
        shutil.rmtree(root)
    except OSError as exc:
        console.print(f"[yellow]Could not remove the demo project {root}: {escape(str(exc))}[/]")
    else:
        console.print(f"Removed the demo project {root} (--keep keeps it).", soft_wrap=True)


# -- enqueue and run --------------------------------------------------------------------------


def _enqueue(plan: list[Call], progress: Progress) -> tuple[dict[str, list[Any]], float]:
    """Enqueue ``plan`` with ``Task.enqueue``; return the results by task name, and the seconds."""
    import demoapp.tasks  # type: ignore[import-not-found]  # written by _write_project

    bar = progress.add_task("Enqueue", total=len(plan), detail="task.enqueue(), one commit each")
    results: dict[str, list[Any]] = {name: [] for name in _KINDS}
    started = time.perf_counter()
    for index, call in enumerate(plan, 1):
        task = getattr(demoapp.tasks, call.task_name)
        if call.delay_s:
            task = task.using(run_after=timezone.now() + timedelta(seconds=call.delay_s))
        results[call.task_name].append(task.enqueue(*call.args))
        if index % 50 == 0:
            progress.update(bar, completed=index)
    elapsed = time.perf_counter() - started
    progress.update(bar, completed=len(plan))
    progress.stop_task(bar)
    return results, elapsed


def _run_worker(backend: SQLiteBackend, total: int, progress: Progress) -> None:
    """Run the worker pool on a background thread until all ``total`` tasks have finished."""
    config = replace(backend.config.worker, burst=False)
    pool = build_pool(backend, config)
    thread = threading.Thread(target=pool.run, name="litetasks-demo-pool", daemon=True)
    bar = progress.add_task("Run", total=total, detail=f"{config.threads} worker threads")
    thread.start()
    try:
        _watch(backend, total, progress, bar, thread)
    finally:
        pool.stop()
        thread.join(config.grace_s)
    if pool.failure is not None:
        raise _DemoError(f"A worker thread failed: {pool.failure!r}.")


def _watch(
    backend: SQLiteBackend, total: int, progress: Progress, bar: TaskID, thread: threading.Thread
) -> None:
    """Poll the queue's counts into the progress bar until every task has finished."""
    store = backend.store
    last_done, last_change = -1, time.monotonic()
    while True:
        states = Counter[str]()
        for (_, state), count in store.counts().items():
            states[state.value] += count
        done = states["SUCCESSFUL"] + states["FAILED"]
        detail = (
            f"{states['RUNNING']:,} running, {states['READY']:,} waiting, "
            f"{states['FAILED']:,} failed"
        )
        progress.update(bar, completed=done, detail=detail)
        if done >= total:
            progress.stop_task(bar)
            return
        if not thread.is_alive():
            raise _DemoError("The worker pool stopped before the batch finished.")
        if done != last_done:
            last_done, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > _STALL_S:
            raise _DemoError(f"No task finished for {_STALL_S:.0f} s; giving up.")
        time.sleep(_POLL_S)


# -- the report -------------------------------------------------------------------------------


def _seconds(later: Any, earlier: Any) -> float:
    return float((later - earlier).total_seconds())


def _results_table(backend: SQLiteBackend) -> Table:
    counts = backend.store.counts()
    queues = sorted(backend.queues or {queue for queue, _ in counts})
    table = Table(title="Results: status by queue", title_justify="left")
    table.add_column("status")
    for queue in [*queues, "total"]:
        table.add_column(queue, justify="right")
    for state in (JobState.SUCCESSFUL, JobState.FAILED, JobState.READY, JobState.RUNNING):
        row = [counts.get((queue, state), 0) for queue in queues]
        table.add_row(state.value, *(f"{n:,}" for n in [*row, sum(row)]))
    return table


def _verdict(report: _Report) -> str:
    statuses = Counter(str(r.status) for r in report.everything)
    return (
        f"{statuses['SUCCESSFUL']:,} of {len(report.everything):,} tasks SUCCESSFUL, "
        f"{statuses['FAILED']:,} FAILED (charge_card fails on purpose)."
    )


def _timings(report: _Report, threads: int) -> dict[str, str]:
    now, total, enqueue_s = report.immediate, len(report.everything), report.enqueue_s
    span = _seconds(max(r.finished_at for r in now), min(r.started_at for r in now))
    wait = statistics.median(_seconds(r.started_at, r.enqueued_at) for r in now)
    return {
        "Enqueue": f"{total / enqueue_s:,.0f} tasks/s: {total:,} calls to task.enqueue() "
        f"in {enqueue_s:.2f} s",
        "Throughput": f"{len(now) / max(span, 1e-6):,.0f} tasks/s: the {len(now):,} tasks due at "
        f"once ran in {span:.2f} s on {threads} threads",
        "Wait (p50)": f"{wait:.2f} s from enqueue to start (the worker starts once all are queued)",
    }


def _ordering(report: _Report) -> dict[str, str]:
    order = sorted(report.immediate, key=lambda r: r.started_at)
    rank = {r.id: index for index, r in enumerate(order, 1)}
    high, low = rank[report.first("page_on_call").id], rank[report.first("compact_archive").id]
    deferred = report.results["send_reminder"]
    late = [_seconds(r.started_at, r.task.run_after) for r in deferred]
    early = sum(1 for s in late if s < 0)
    return {
        "Priority": f"page_on_call (priority 10, enqueued last) started #{high:,} of {len(order):,}"
        f"\ncompact_archive (priority -10, enqueued first) started #{low:,}\n"
        + ("High priority ran first." if high < low else "Unexpected: low priority ran first!"),
        "Deferred": f"{len(deferred)} send_reminder.using(run_after=now + {DEFER_S:g} s) ran "
        f"{min(late) * 1000:,.0f}-{max(late) * 1000:,.0f} ms after coming due, "
        + (f"{early} too early!" if early else "none early"),
    }


def _features(report: _Report) -> dict[str, str]:
    rows = {}
    if report.results["count_words"]:
        words = report.first("count_words")
        rows["Result"] = f"count_words({words.args[0]!r}).return_value == {words.return_value!r}"
    emails, context = report.results["send_welcome_email"], report.first("report_attempt")
    rows["Async"] = (
        f"{len(emails)} send_welcome_email (async def, queue 'emails', priority 5), "
        f"e.g. {emails[0].return_value!r}"
    )
    saw = context.return_value if str(context.status) == "SUCCESSFUL" else {}
    rows["Context"] = (
        "report_attempt (takes_context) saw "
        + ("its own result id" if saw.get("result_id") == context.id else "a wrong result id!")
        + f", attempt {saw.get('attempt')}"
    )
    for error in report.first("charge_card").errors[:1]:
        rows["Failure"] = (
            f"{len(report.results['charge_card'])} charge_card: result.errors[0] holds "
            f"exception_class_path {error.exception_class_path!r} and the traceback, ending:\n"
            + error.traceback.strip().splitlines()[-1]
        )
    return rows


def _details_table(report: _Report, backend: SQLiteBackend) -> Table:
    rows = {
        **_timings(report, backend.config.worker.threads),
        **_ordering(report),
        **_features(report),
        "Queue file": str(backend.config.store.path),
    }
    table = Table(title="What happened", title_justify="left", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for label, text in rows.items():
        table.add_row(label, escape(text))
    return table


def _next_steps(framework: str) -> Panel:
    code = Syntax(_NEXT_STEPS.substitute(framework=framework), "python", background_color="default")
    commands = Table.grid(padding=(0, 2))
    commands.add_row("[bold]litetasks run[/]", "run workers (from the folder holding manage.py)")
    commands.add_row("[bold]litetasks status[/]", "count the tasks per queue and status")
    return Panel(
        Group(code, commands), title="Next: use litetasks in your project", title_align="left"
    )


# -- the command ------------------------------------------------------------------------------


def _header(console: Console, root: Path, backend: SQLiteBackend, plan: list[Call]) -> None:
    kinds = Counter(call.task_name for call in plan)
    console.print(
        f"[bold]litetasks demo[/]: Django {django.get_version()} ({FRAMEWORK}), Python "
        f"{platform.python_version()}, SQLite {apsw.sqlite_lib_version()}"
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_row("Project", f"{root} (throwaway)")
    grid.add_row("Queue", str(backend.config.store.path))
    batch = ", ".join(
        f"{kinds[name]:,} {name}{note}" for name, note in _KINDS.items() if kinds[name]
    )
    grid.add_row("Batch", batch)
    console.print(grid)


def _demo_in(root: Path, console: Console, total: int) -> None:
    _write_project(root, FRAMEWORK)
    backend = _setup_django(root)
    # The task framework logs each failure with its traceback; the report shows them instead.
    logging.getLogger(FRAMEWORK).setLevel(logging.CRITICAL)
    plan = build_plan(total)
    _header(console, root, backend, plan)
    columns = (
        TextColumn("{task.description:<8}"),
        BarColumn(bar_width=32),
        TextColumn(
            "{task.completed:>,.0f}/{task.total:,.0f}  {task.elapsed:4.1f} s  {task.fields[detail]}"
        ),
    )
    with Progress(*columns, console=console) as progress:
        enqueued, enqueue_s = _enqueue(plan, progress)
        _run_worker(backend, total, progress)
    results = {name: [backend.get_result(r.id) for r in rs] for name, rs in enqueued.items()}
    report = _Report(results=results, enqueue_s=enqueue_s)
    console.print(_results_table(backend))
    console.print(_verdict(report))
    console.print(_details_table(report, backend))
    console.print(_next_steps(FRAMEWORK))


def _refusal(tasks: int) -> str | None:
    if tasks < MIN_TASKS:
        return f"--tasks must be at least {MIN_TASKS} (got {tasks}), to hold every kind of task."
    if settings.configured:
        return (
            "Django settings are already loaded in this process, so the demo cannot set up its "
            "own project. Run `litetasks demo` from a shell, not through manage.py."
        )
    return None


def run_demo(*, keep: bool = False, tasks: int = DEFAULT_TASKS) -> int:
    """Run a mixed batch of ``tasks`` through a throwaway project; return the exit code.

    The project's folder is removed at the end unless ``keep``.
    """
    console = Console(highlight=False)
    refusal = _refusal(tasks)
    if refusal:
        console.print(f"[red]litetasks demo: {escape(refusal)}[/]")
        return 2
    root = Path(tempfile.mkdtemp(prefix="litetasks-demo-")).resolve()
    try:
        _demo_in(root, console, tasks)
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted.[/]")
        return 130
    except LiteTasksError as exc:
        console.print(f"[red]litetasks demo: {escape(str(exc))}[/]")
        return 1
    finally:
        _leave(root, console, keep=keep)
    return 0
