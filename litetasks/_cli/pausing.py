"""``litetasks pause`` and ``litetasks resume``: stop and restart the work of a queue or of a
periodic schedule (kept in the queue file, so it outlasts restarts; see _store/pausing.py).

Imported by commands.py, whose ``app`` these commands join.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from ..exceptions import ConfigurationError, LiteTasksError
from .bootstrap import check_queues, get_backend, setup_django
from .commands import Backend, PythonPath, Settings, app

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend

__all__ = ["pause", "pause_or_resume", "resume"]

Name = Annotated[
    str, typer.Argument(metavar="NAME", help="The queue (or, with --schedule, the schedule).")
]
IsSchedule = Annotated[
    bool, typer.Option("--schedule", help="NAME is a periodic schedule, not a queue.")
]


def _command(*, paused: bool) -> Callable[..., None]:
    """The body ``litetasks pause`` (``paused``) and ``litetasks resume`` share."""

    def command(
        name: Name,
        schedule: IsSchedule = False,
        settings: Settings = None,
        pythonpath: PythonPath = None,
        backend: Backend = "default",
    ) -> None:
        _run(settings, pythonpath, backend, name, schedule=schedule, paused=paused)

    return command


pause = app.command(
    "pause",
    short_help="Pause a queue or (--schedule) a periodic schedule.",
    help="Pause a queue (no worker takes its tasks) or a periodic schedule (its slots are "
    "skipped) until `litetasks resume`. Workers notice within about a second.",
)(_command(paused=True))
resume = app.command(
    "resume",
    short_help="Resume a paused queue or periodic schedule.",
    help="Resume a paused queue or periodic schedule.",
)(_command(paused=False))


def _run(
    settings: str | None,
    pythonpath: str | None,
    alias: str,
    name: str,
    *,
    schedule: bool,
    paused: bool,
) -> None:
    try:
        setup_django(settings, pythonpath)
        code = pause_or_resume(get_backend(alias), name, schedule=schedule, paused=paused)
    except LiteTasksError as exc:
        typer.echo(f"litetasks: error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def pause_or_resume(backend: SQLiteBackend, name: str, *, schedule: bool, paused: bool) -> int:
    """Pause or resume the queue or schedule ``name``; print what happened; return 0."""
    store = backend.store
    kind = "schedule" if schedule else "queue"
    if paused:  # resuming takes any name: a pause outlives the settings that named it
        _check_known(backend, name, schedule=schedule)
    if schedule:
        changed = (
            store.pausing.pause_schedule(name) if paused else store.pausing.resume_schedule(name)
        )
    else:
        changed = store.pausing.pause_queue(name) if paused else store.pausing.resume_queue(name)
    if changed:
        typer.echo(f"{'Paused' if paused else 'Resumed'} {kind} {name!r}.")
    else:
        typer.echo(f"The {kind} {name!r} was {'paused already' if paused else 'not paused'}.")
    return 0


def _check_known(backend: SQLiteBackend, name: str, *, schedule: bool) -> None:
    if not schedule:
        check_queues(backend, [name])
        return
    from .._django.periodic import load_schedules

    known = load_schedules(backend)
    if name not in known:
        raise ConfigurationError(
            f"No periodic schedule {name!r} in backend {backend.alias!r} (declared: "
            f"{', '.join(sorted(known)) or 'none'}). `litetasks status` lists them."
        )
