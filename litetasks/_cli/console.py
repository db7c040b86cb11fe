"""``litetasks delete``: the console's delete, on the command line (the same store operation)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..exceptions import ConfigurationError, LiteTasksError
from .bootstrap import get_backend, setup_django
from .commands import Backend, PythonPath, Settings, app

__all__ = ["delete"]


@app.command(short_help="Delete tasks that are not RUNNING (READY, FAILED, SUCCESSFUL).")
def delete(
    ids: Annotated[
        list[str] | None, typer.Argument(metavar="ID...", help="Ids of the tasks to delete.")
    ] = None,
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
) -> None:
    """Delete tasks (READY, FAILED or SUCCESSFUL; a RUNNING one is left: cancel it first)."""
    try:
        if not ids:
            raise ConfigurationError("Give the ids of the tasks to delete.")
        setup_django(settings, pythonpath)
        results = get_backend(backend).store.delete(ids)
    except LiteTasksError as exc:
        typer.echo(f"litetasks: error: {exc}", err=True)
        raise typer.Exit(2) from None
    for job_id, outcome in results.items():
        typer.echo(f"{job_id}: {outcome}")
    raise typer.Exit(1 if any(o != "deleted" for o in results.values()) else 0)
