"""The ``litetasks`` command (also ``python manage.py litetasks``): parse, set up, hand over."""

from __future__ import annotations

import dataclasses
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from ..exceptions import ConfigurationError, LiteTasksError
from .bootstrap import check_queues, get_backend, setup_django
from .logs import configure_logging, parse_level

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend
    from .._store.config import WorkerConfig

app = typer.Typer(
    help="Background tasks for Django, with a SQLite file as the queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: it wraps at any width without cutting option names (rich's tables
    # cut them at 80 columns) and keeps text in [brackets], which rich reads as markup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # -h, as in Django's commands
)

Settings = Annotated[
    str | None, typer.Option("--settings", metavar="MODULE", help="Django settings module.")
]
PythonPath = Annotated[
    str | None,
    typer.Option("--pythonpath", metavar="DIR", help="A folder to add to the import path."),
]
Backend = Annotated[
    str, typer.Option("--backend", metavar="ALIAS", help="Alias in settings.TASKS.")
]


class _Errors:
    tracebacks = False  # manage.py litetasks --traceback


def show_tracebacks() -> None:
    """Print the traceback of an error that ends a command, before its one line."""
    _Errors.tracebacks = True


def _fail(exc: BaseException) -> typer.Exit:
    if _Errors.tracebacks:
        traceback.print_exception(exc)
    typer.echo(f"litetasks: error: {exc}", err=True)
    return typer.Exit(2)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"litetasks {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Background tasks for Django, with a SQLite file as the queue."""


Queues = Annotated[
    list[str] | None,
    typer.Option("--queue", "-q", metavar="NAME", help="Queue to serve (repeat); all if omitted."),
]
Threads = Annotated[
    int | None,
    typer.Option(min=1, envvar="LITETASKS_THREADS", metavar="N", help="Threads per process."),
]
Processes = Annotated[
    int | None,
    typer.Option(
        min=0,
        envvar="LITETASKS_PROCESSES",
        metavar="N",
        help="Worker processes (0: one per core).",
    ),
]
Burst = Annotated[
    bool,
    typer.Option(help="Run every task due now, say what ran and is left, exit (see README)."),
]
UntilEmpty = Annotated[
    bool,
    typer.Option(
        "--until-empty",
        help="A burst that also waits for retries, deferred tasks and tasks running "
        "elsewhere, until none is left in the served queues.",
    ),
]
DueWithin = Annotated[
    float | None,
    typer.Option(
        min=0,
        metavar="SECONDS",
        help="With --until-empty: wait only for tasks due within SECONDS of the start.",
    ),
]
Grace = Annotated[
    float | None,
    typer.Option(min=0, metavar="SECONDS", help="Seconds running tasks get to finish on shutdown."),
]
MaxTasks = Annotated[
    int | None,
    typer.Option(min=0, metavar="N", help="Replace a worker process after N tasks (0: never)."),
]
MaxMemory = Annotated[
    int | None,
    typer.Option(
        min=0, metavar="MB", help="Replace a worker process above this RSS in MB (0: never)."
    ),
]
Reload = Annotated[
    bool, typer.Option(help="Restart the pool when Python files in the project change.")
]
LogLevel = Annotated[
    str | None,
    typer.Option(
        metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR (default: INFO; see README, Logging)."
    ),
]


@app.command(short_help="Run a worker pool (until stopped; --burst: until nothing is due).")
def run(
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
    queue: Queues = None,
    threads: Threads = None,
    processes: Processes = None,
    burst: Burst = False,
    until_empty: UntilEmpty = False,
    due_within: DueWithin = None,
    grace: Grace = None,
    max_tasks_per_child: MaxTasks = None,
    max_memory_per_child: MaxMemory = None,
    reload: Reload = False,
    log_level: LogLevel = None,
) -> None:
    """Run a worker pool until SIGTERM or SIGINT (or, with --burst, until nothing is due;
    with --until-empty, until nothing is left)."""
    if due_within is not None and not until_empty:
        raise _fail(ConfigurationError("--due-within needs --until-empty."))
    mode = _RunMode(burst=burst, until_empty=until_empty, due_within=due_within, reload=reload)
    flags = {
        "burst": mode.drains,
        "threads": threads,
        "processes": processes,
        "grace_s": grace,
        "max_tasks_per_child": max_tasks_per_child,
        "max_memory_per_child_mb": max_memory_per_child,
    }
    try:
        _setup_with_logging(settings, pythonpath, log_level)
        lite = get_backend(backend)
        config = _worker_config(lite, queue or [], flags)
        schedules = mode.schedules(lite)  # bad ones: exit 2 here
    except LiteTasksError as exc:
        raise _fail(exc) from None
    raise typer.Exit(mode.run(lite, config, schedules, pythonpath))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _RunMode:
    """How ``run`` runs the pool, from its flags: again at every code change (--reload, which
    wins), as a drain that exits (--burst, --until-empty), or supervised until stopped."""

    burst: bool
    until_empty: bool
    due_within: float | None  # seconds; only with until_empty
    reload: bool

    @property
    def drains(self) -> bool:
        """Whether the pool runs what there is and exits (``burst`` in its config)."""
        return self.burst or self.until_empty

    def schedules(self, lite: SQLiteBackend) -> dict[str, Any]:
        """The periodic schedules the pool runs: only a supervised pool runs them (a bad one
        raises ``ConfigurationError``)."""
        if self.drains or self.reload:
            return {}
        from .._django.periodic import load_schedules

        return load_schedules(lite)

    def run(
        self,
        lite: SQLiteBackend,
        config: WorkerConfig,
        schedules: dict[str, Any],
        pythonpath: str | None,
    ) -> int:
        """Run the pool so (--reload also watches ``pythonpath``); return the exit code."""
        if self.reload:
            from .autoreload import reload_command, run_with_reload

            folders = [Path.cwd(), *([Path(pythonpath)] if pythonpath else [])]
            return run_with_reload(reload_command(sys.argv), folders)
        if self.drains:
            from .drain import drain

            # -1: one burst, what is due now (--burst); None: until nothing is left at all.
            return drain(lite, config, self.due_within if self.until_empty else -1)
        from .._runtime.supervisor import Supervisor

        return Supervisor(lite, config, schedules).run()


def _setup_with_logging(settings: str | None, pythonpath: str | None, level: str | None) -> None:
    """Set Django up, then logging as the settings allow (README: "Logging")."""
    if level is not None:
        parse_level(level)  # a bad level: one line, before Django starts
    setup_django(settings, pythonpath)
    from .._django.compat import FRAMEWORK

    configure_logging(level, ("litetasks", FRAMEWORK))


def _worker_config(lite: SQLiteBackend, queues: list[str], flags: dict[str, Any]) -> WorkerConfig:
    """The backend's worker settings with the command line's ``flags`` (None: not given)."""
    # Open (or create) the queue file now: one clear error here, not a crash per worker.
    lite.store  # noqa: B018
    overrides: dict[str, Any] = {"queues": check_queues(lite, queues)}
    overrides.update({name: value for name, value in flags.items() if value is not None})
    return dataclasses.replace(lite.config.worker, **overrides)


@app.command(short_help="Show tasks per queue and state, workers, stranded tasks.")
def status(
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, metavar="SECONDS", help="Seconds between refreshes.")
    ] = 2.0,
) -> None:
    """Show tasks per queue and state, the live workers, and tasks stranded under lost ones."""
    try:
        setup_django(settings, pythonpath)
        lite = get_backend(backend)
        from .status import print_status
        from .watch import watch_status

        if watch:
            watch_status(lite, interval_s=interval, as_json=as_json)
        else:
            print_status(lite, as_json=as_json)
    except LiteTasksError as exc:
        raise _fail(exc) from None


def _act(
    settings: str | None,
    pythonpath: str | None,
    backend: str,
    action: Callable[..., int],
    *args: Any,
    **kwargs: Any,
) -> None:
    """Set Django up, run ``action(backend, *args, **kwargs)`` and exit with its code (a
    ``LiteTasksError`` is one line on stderr and exit 2)."""
    try:
        setup_django(settings, pythonpath)
        code = action(get_backend(backend), *args, **kwargs)
    except LiteTasksError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


@app.command()
def retry(
    ids: Annotated[
        list[str] | None, typer.Argument(metavar="ID...", help="Ids of FAILED tasks.")
    ] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Retry every FAILED task.")] = False,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", metavar="NAME", help="With --failed: only this queue."),
    ] = None,
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
) -> None:
    """Run FAILED tasks again, each with a fresh attempt budget.

    Exits 0 when every task named is retried, 1 when any is not (an unknown id, or a task
    that is not FAILED: it is left as it is), 2 on a usage error.
    """
    from .actions import retry_tasks

    _act(settings, pythonpath, backend, retry_tasks, ids or [], failed=failed, queues=queue or [])


@app.command(short_help="Cancel tasks: READY never run, RUNNING are interrupted.")
def cancel(
    ids: Annotated[
        list[str] | None, typer.Argument(metavar="ID...", help="Ids of the tasks to cancel.")
    ] = None,
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
) -> None:
    """Cancel tasks: READY ones never run, RUNNING ones are interrupted; both end FAILED."""
    from .actions import cancel_tasks

    _act(settings, pythonpath, backend, cancel_tasks, ids or [])


@app.command(short_help="Delete finished results older than an age (results_ttl).")
def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Delete results older than this: 45s, 30m, 12h, 7d or 2w "
            "(default: OPTIONS results_ttl).",
            metavar="AGE",
        ),
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", metavar="STATE", help="SUCCESSFUL or FAILED (repeat); both if omitted."
        ),
    ] = None,
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
) -> None:
    """Delete finished results now (workers also do it in the background: results_ttl)."""
    from .actions import prune_results

    _act(settings, pythonpath, backend, prune_results, older_than, status or [])


@app.command(short_help="Copy the live queue file to DEST: one consistent snapshot.")
def backup(
    dest: Annotated[Path, typer.Argument(metavar="DEST", help="The file to create (mode 0600).")],
    force: Annotated[bool, typer.Option("--force", help="Replace DEST if it exists.")] = False,
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
) -> None:
    """Copy the queue file, while workers and producers use it, to DEST: one consistent snapshot."""
    from .actions import backup_queue

    _act(settings, pythonpath, backend, backup_queue, dest, force=force)


@app.command(short_help="Add the tasks of a saved copy that the queue file lacks.")
def merge(
    saved: Annotated[
        Path, typer.Argument(metavar="SAVED", help="A saved copy or backup of the queue file.")
    ],
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
) -> None:
    """Add to the queue file the tasks of SAVED that it lacks (by id; never changes one it has)."""
    from .actions import merge_copy

    _act(settings, pythonpath, backend, merge_copy, saved)


@app.command(short_help="Run a throwaway project's mixed batch, with a progress bar.")
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the demo project folder.")] = False,
    tasks: Annotated[
        int, typer.Option(min=1, metavar="N", help="How many tasks to enqueue.")
    ] = 2000,
) -> None:
    """Build a throwaway Django project, enqueue a mixed batch, and run it with a progress bar."""
    from .demo import run_demo

    raise typer.Exit(run_demo(keep=keep, tasks=tasks))


BenchFile = Annotated[
    Path | None, typer.Option(metavar="FILE", help="Queue file to use (new or empty).")
]
BenchTasks = Annotated[int | None, typer.Option(min=1, metavar="N", help="Tasks per rate [5000].")]
Probes = Annotated[int | None, typer.Option(min=1, metavar="N", help="Latency probes [100].")]
IdleSeconds = Annotated[
    float | None,
    typer.Option(min=0.1, metavar="SECONDS", help="Idle window [5]."),
]
Synchronous = Annotated[
    Literal["NORMAL", "FULL"] | None,
    typer.Option(case_sensitive=False, metavar="NORMAL|FULL", help="Default: OPTIONS."),
]
JsonFile = Annotated[Path | None, typer.Option("--json", metavar="FILE", help="Save JSON here.")]
Quick = Annotated[bool, typer.Option(help="1000 tasks, 30 probes, 2 s idle.")]


@app.command(short_help="Measure enqueue, drain, latency, idle CPU and memory.")
def bench(
    settings: Settings = None,
    pythonpath: PythonPath = None,
    backend: Backend = "default",
    path: BenchFile = None,
    n: BenchTasks = None,
    probes: Probes = None,
    idle_seconds: IdleSeconds = None,
    synchronous: Synchronous = None,
    as_json: JsonFile = None,
    quick: Quick = False,
) -> None:
    """Measure enqueue, drain, latency, idle CPU and memory here, on a temporary queue file."""
    from .bench import bench_options, run_bench

    try:
        options = bench_options(
            quick=quick,
            settings=settings,
            pythonpath=pythonpath,
            backend=backend,
            path=path,
            n=n,
            probes=probes,
            idle_s=idle_seconds,
            synchronous=synchronous,
            json_path=as_json,
        )
        code = run_bench(options)
    except LiteTasksError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


from . import console, forwarding, metrics, pausing  # noqa: E402, F401  (their commands join app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``litetasks`` console script."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="litetasks")


if __name__ == "__main__":
    main()


__all__ = ["app", "main", "show_tracebacks"]
