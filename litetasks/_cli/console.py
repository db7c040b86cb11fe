"""``litetasks delete``: the console's delete, on the command line (the same store operation)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..exceptions import ConfigurationError, LiteTasksError
from .bootstrap import get_backend, setup_django
from .commands import app

__all__ = ["delete"]


@app.command()
def delete(
    ids: Annotated[list[str] | None, typer.Argument(help="Ids of the tasks to delete.")] = None,
    settings: Annotated[
        str | None, typer.Option("--settings", help="Django settings module.")
    ] = None,
    pythonpath: Annotated[
        str | None, typer.Option("--pythonpath", help="A folder to add to the import path.")
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help="Alias in settings.TASKS.")] = "default",
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
