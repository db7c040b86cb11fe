"""``litetasks forward``, ``export`` and ``import``: move tasks that have not started elsewhere."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..exceptions import LiteTasksError
from .bootstrap import get_backend, setup_django
from .commands import Backend, PythonPath, Settings, app

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend
    from .._django.forwarding import ForwardReport

__all__ = ["export", "forward", "import_"]

Queues = Annotated[
    list[str] | None,
    typer.Option("--queue", "-q", metavar="NAME", help="Only this queue (repeat); all if omitted."),
]
Tasks = Annotated[
    list[str] | None,
    typer.Option(
        "--task",
        "-t",
        metavar="PATH",
        help="Only this task, by dotted path (repeat); all if omitted.",
    ),
]


def _setup(settings: str | None, pythonpath: str | None, backend: str) -> SQLiteBackend:
    try:
        setup_django(settings, pythonpath)
        lite: SQLiteBackend = get_backend(backend)
    except LiteTasksError as exc:
        typer.echo(f"litetasks: error: {exc}", err=True)
        raise typer.Exit(2) from None
    return lite


@app.command(short_help="Move tasks not yet started to another backend alias.")
def forward(
    to: Annotated[
        str,
        typer.Option("--to", metavar="ALIAS", help="The alias in settings.TASKS to move tasks to."),
    ],
    queue: Queues = None,
    task: Tasks = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would move and what cannot; move nothing.")
    ] = False,
    batch: Annotated[
        int, typer.Option(min=1, metavar="N", help="Tasks taken per transaction.")
    ] = 500,
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
) -> None:
    """Enqueue every task that has not started on backend TO, then mark it FORWARDED here."""
    lite = _setup(settings, pythonpath, backend)
    _check_target(lite, to)
    try:
        if dry_run:
            report = lite.forward(to, queues=queue, tasks=task, dry_run=True)
        else:
            report = _forward_with_progress(lite, to, queue, task, batch)
    except Exception as exc:  # the target's own errors: down, misconfigured, unknown alias
        typer.echo(f"litetasks: error: forward to {to!r} stopped: {exc}", err=True)
        typer.echo("Tasks not enqueued there are READY here; run the command again.", err=True)
        raise typer.Exit(1) from None
    _print_report(report, dry_run=dry_run)
    raise typer.Exit(1 if report.refused else 0)


def _forward_with_progress(
    lite: SQLiteBackend, to: str, queues: list[str] | None, tasks: list[str] | None, batch: int
) -> ForwardReport:
    """Forward the READY tasks to backend ``to``, with a progress bar on stderr."""
    total = lite.store.forwarding.count_ready(queues=queues, tasks=tasks)
    with Progress(
        TextColumn(f"forward to {to}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
    ) as progress:
        bar = progress.add_task("forward", total=total)
        return lite.forward(
            to, queues=queues, tasks=tasks, batch=batch, progress=lambda n: progress.advance(bar, n)
        )


def _check_target(lite: SQLiteBackend, to: str) -> None:
    from django.conf import settings

    from .._django.compat import InvalidTaskBackend
    from .._django.forwarding import target_backend

    try:
        target_backend(to, lite)
    except InvalidTaskBackend as exc:
        aliases = sorted(getattr(settings, "TASKS", {}))
        hint = (
            ""
            if to in aliases
            else f" Configured aliases: {', '.join(aliases)}. Add the target to settings.TASKS."
        )
        typer.echo(f"litetasks: error: cannot forward to {to!r}: {exc}{hint}", err=True)
        raise typer.Exit(2) from None


def _print_report(report: ForwardReport, *, dry_run: bool) -> None:
    verb = "would move" if dry_run else "moved"
    for (task_path, queue), count in sorted(report.moved.items()):
        typer.echo(f"{verb} {count:>6}  {task_path} (queue {queue!r})")
    for task_path, lost in sorted(report.not_carried.items()):
        typer.echo(f"not carried to {report.target!r}: {task_path}: {', '.join(sorted(lost))}")
    refused: dict[tuple[str, str], list[str]] = {}
    for job_id, task_path, reason in report.refused:
        refused.setdefault((task_path, reason), []).append(job_id)
    for (task_path, reason), ids in sorted(refused.items()):
        shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
        typer.echo(f"refused {len(ids):>6}  {task_path}: {reason} (stay READY here: {shown})")
    if report.moved_count and not dry_run:
        rate = report.moved_count / max(report.elapsed_s, 1e-6)
        typer.echo(f"forwarded in {report.elapsed_s:.2f} s ({rate:.0f} tasks/s).")
    if report.resumed:
        typer.echo(f"{report.resumed} task(s) left under way by an interrupted forward resumed.")
    typer.echo(
        f"{report.moved_count} task(s) {verb} to {report.target!r}, {len(report.refused)} refused. "
        "RUNNING tasks stay: stop the pool with SIGTERM (they get its grace period), then "
        "forward again what went back to READY."
    )
    if dry_run:
        window = (
            "none (litetasks chooses the target's ids)"
            if report.chooses_ids
            else "at most one per interruption"
        )
        typer.echo(f"If the forward is interrupted, tasks that may reach it twice: {window}.")


@app.command(short_help="Write tasks not yet started as JSON Lines.")
def export(
    dest: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="The JSON Lines file to write ('-': stdout)."),
    ],
    queue: Queues = None,
    task: Tasks = None,
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
) -> None:
    """Write the tasks that have not started as versioned JSON Lines (they stay READY here)."""
    lite = _setup(settings, pythonpath, backend)
    export = lite.store.forwarding.export(queues=queue, tasks=task)
    try:
        with _open_out(dest) as out:
            for line in export.lines:
                out.write(line + "\n")
    except FileExistsError:
        typer.echo(f"litetasks: error: {str(dest)!r} exists; name a new file.", err=True)
        raise typer.Exit(2) from None
    for row in export.unreadable:
        typer.echo(f"litetasks: refused {row.job_id} ({row.task_path}): {row.reason}", err=True)
    refused = f", {len(export.unreadable)} refused" if export.unreadable else ""
    typer.echo(
        f"{len(export.lines) - 1} task(s) exported to {str(dest)!r}{refused}; "
        "they stay READY here.",
        err=True,
    )
    raise typer.Exit(1 if export.unreadable else 0)


@app.command(name="import", short_help="Add the tasks of an export to the queue file.")
def import_(
    source: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="A file litetasks export wrote ('-': stdin)."),
    ],
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
) -> None:
    """Add the tasks of an export to the queue file, exactly (ids, times, attempts, options)."""
    lite = _setup(settings, pythonpath, backend)
    try:
        with _open_in(source) as lines:
            added, skipped = lite.store.forwarding.import_lines(lines, str(source))
    except (LiteTasksError, OSError) as exc:
        typer.echo(f"litetasks: error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{added} task(s) imported, {skipped} skipped (already here, or a live twin).")


@contextlib.contextmanager
def _open_out(dest: Path) -> Iterator[TextIO]:
    if str(dest) == "-":
        yield sys.stdout
        return
    with dest.open("x", encoding="utf-8") as out:
        yield out


@contextlib.contextmanager
def _open_in(source: Path) -> Iterator[BinaryIO]:
    """The file's lines as bytes: the import decodes each, naming a line that is not UTF-8."""
    if str(source) == "-":
        yield sys.stdin.buffer
        return
    with source.open("rb") as lines:
        yield lines
