"""``litetasks bench``: what litetasks does on this machine, with these settings.

A temporary folder, removed at the end, holds the project's settings (or minimal ones) pointed
at a temporary queue file, no-op tasks, and logs. This process enqueues; the workers are real
``litetasks run`` subprocesses. Drain rates run from the tasks' own first start to last finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import os
import random
import resource
import secrets
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
from django.conf import settings
from rich.console import Console
from rich.markup import escape

from .._django.backend import SQLiteBackend
from .._django.compat import FRAMEWORK
from .._store.connection import immediate, open_connection
from .._store.doorbell import doorbell_path
from .._store.enqueueing import new_job_ids
from .._store.records import JobState, NewJob
from .._store.store import Store
from ..exceptions import ConfigurationError, LiteTasksError
from .benchtable import print_table, report
from .bootstrap import find_settings_module, get_backend, setup_django

__all__ = ["QUICK", "BenchError", "BenchOptions", "bench_options", "percentile", "run_bench"]

SETTINGS_MODULE = "litetasks_bench_settings"
TASKS_MODULE = "litetasks_bench_tasks"
SITE_ARGS = (42, "signup", {"plan": "pro", "source": "web", "ref": 7})  # the headline task's
QUICK = {"n": 1000, "probes": 30, "idle_s": 2.0, "settle_s": 0.5}  # the --quick defaults
_GAP_S = (0.005, 0.025)  # between latency probes: random, so they cannot fall into step
_DRAIN_TIMEOUT_S = 600.0
_WAIT_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 15.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_SETTINGS_PY = string.Template("""\
# Settings of one `litetasks bench` run: the queue file and the tasks are its own.
import copy
$base
TASKS = copy.deepcopy(globals().get("TASKS", {}))
for _params in TASKS.values():  # an in-process pool would run the benchmark's tasks too
    if _params.get("BACKEND") == "litetasks.backend.SQLiteBackend":
        _params.setdefault("OPTIONS", {})["autorun"] = False
if $alias in TASKS:
    _options = TASKS[$alias].setdefault("OPTIONS", {})
    _options.update($overrides)
    _options["task_modules"] = [*_options.get("task_modules", ()), "$tasks_module"]
""")
_PROJECT_BASE = string.Template("""\
from importlib import import_module
_project = import_module($module)
globals().update({name: value for name, value in vars(_project).items() if name.isupper()})""")
_THROWAWAY_BASE = string.Template("""\
SECRET_KEY = $secret_key
USE_TZ = True
INSTALLED_APPS = ["litetasks"]
TASKS = {$alias: {"BACKEND": "litetasks.backend.SQLiteBackend"}}""")
_TASKS_PY = string.Template("""\
# Tasks of one `litetasks bench` run: the same bodies on every machine.
import time
from $framework import task


@task(backend=$alias, queue_name=$queue)
def noop() -> None:  # the figures measure the queue, not the task
    pass


@task(backend=$alias, queue_name=$queue)
def record(user_id: int, action: str, data: dict) -> int:  # what a site passes, and returns
    return user_id + len(action) + len(data)


@task(backend=$alias, queue_name=$queue)
def stamp() -> int:  # when it started (ns since the epoch), for the latency probes
    return time.time_ns()
""")

_FORGET_BENCH_JOBS = """
DELETE FROM jobs
WHERE task_path LIKE :prefix
"""


class BenchError(LiteTasksError):
    """A step of the benchmark failed; the message says which, and why."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BenchOptions:
    """What ``litetasks bench`` measures, and where (``QUICK`` holds the --quick amounts)."""

    settings: str | None = None
    pythonpath: str | None = None
    backend: str = "default"
    path: Path | None = None  # None: a temporary queue file
    n: int = 5000  # tasks per rate
    probes: int = 100  # latency probes
    idle_s: float = 5.0  # idle CPU window
    settle_s: float = 1.0  # idle time before the probes
    synchronous: str | None = None  # None: the backend's setting
    json_path: Path | None = None  # also save the results here


@dataclasses.dataclass(kw_only=True)
class _Run:
    """One benchmark run: its options, folder, backend and task module, and its subprocesses."""

    options: BenchOptions
    root: Path
    project: str | None  # the project's settings module; None: the throwaway settings
    backend: SQLiteBackend
    tasks: Any
    started: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    def start(self, name: str, *flags: str) -> subprocess.Popen[bytes]:
        """Start ``litetasks run`` with the benchmark's settings; its output goes to a log."""
        argv = [sys.executable, "-m", "litetasks", "run", "--settings", SETTINGS_MODULE]
        argv += ["--backend", self.options.backend, *flags]
        if self.options.pythonpath:
            argv += ["--pythonpath", self.options.pythonpath]
        path = os.pathsep.join(filter(None, [str(self.root), os.environ.get("PYTHONPATH")]))
        # The supervisor stops if we die, even by SIGKILL, as under `litetasks run --reload`.
        env = {**os.environ, "PYTHONPATH": path, "LITETASKS_PARENT_PID": str(os.getpid())}
        # A stop signal inside Popen() would lose its child: the handlers only note it until
        # the child is listed, then it is raised as KeyboardInterrupt.
        caught: list[int] = []
        held = {sig: signal.signal(sig, lambda n, _: caught.append(n)) for sig in _STOP_SIGNALS}
        try:
            with (self.root / f"{name}.log").open("ab") as log:  # its session: no Ctrl-C
                proc = subprocess.Popen(
                    argv, env=env, stdout=log, stderr=log, start_new_session=True
                )
            self.started.append(proc)
        finally:
            for sig, handler in held.items():
                signal.signal(sig, handler)
        if caught:
            raise KeyboardInterrupt
        return proc

    def log_tail(self, name: str) -> str:
        lines = (self.root / f"{name}.log").read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "(no output)"


def bench_options(*, quick: bool = False, **given: Any) -> BenchOptions:
    """Return ``BenchOptions`` from command-line values; None means the default (or --quick's)."""
    chosen = {name: value for name, value in given.items() if value is not None}
    return BenchOptions(**{**(QUICK if quick else {}), **chosen})


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``proc`` and wait; SIGKILL it if need be (its workers get SIGTERM as it dies)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tree_cpu_s(root: int) -> float:
    """Return the CPU seconds of the live threads of ``root``'s process tree (Linux ``/proc``).

    ``schedstat`` counts nanoseconds, where clock ticks would resolve only 0.1 % of a core.
    """
    pids, total_ns = [root], 0
    while pids:
        with contextlib.suppress(OSError):  # a process or thread that just exited
            for task in Path(f"/proc/{pids.pop()}/task").iterdir():
                total_ns += int((task / "schedstat").read_text().split()[0])
                pids += [int(pid) for pid in (task / "children").read_text().split()]
    return total_ns / 1e9


def _check_path(path: Path) -> bool:
    """Refuse a ``--path`` that is neither new nor an empty queue file; True if it exists."""
    if not path.exists():
        return False
    with Store(path) as store:
        jobs, workers = sum(store.counts().values()), len(store.get_workers())
    if jobs or workers:
        raise ConfigurationError(
            f"The queue file {str(path)!r} is in use (jobs: {jobs:,}, workers: {workers}); "
            "litetasks bench only uses a new or empty one. Point --path at a new file instead."
        )
    return True


def _prepare(root: Path, options: BenchOptions) -> _Run:
    """Write the settings, set Django up, then write and import the task module."""
    try:  # the project's settings, found as `litetasks run` finds them
        project: str | None = find_settings_module(options.settings, Path.cwd())
    except ConfigurationError:
        project = None
    overrides = {"path": str(options.path or root / "tasks.sqlite3")}
    if options.synchronous:
        overrides["synchronous"] = options.synchronous
    alias = repr(options.backend)
    if project is None:
        base = _THROWAWAY_BASE.substitute(secret_key=repr(secrets.token_urlsafe(32)), alias=alias)
    else:
        base = _PROJECT_BASE.substitute(module=repr(project))
    text = _SETTINGS_PY.substitute(
        base=base, alias=alias, overrides=repr(overrides), tasks_module=TASKS_MODULE
    )
    (root / f"{SETTINGS_MODULE}.py").write_text(text)
    sys.path.insert(0, str(root))
    setup_django(SETTINGS_MODULE, options.pythonpath)
    backend: SQLiteBackend = get_backend(options.backend)
    queues = backend.queues  # the tasks must go to a queue the backend accepts
    queue = "default" if not queues or "default" in queues else sorted(queues)[0]
    text = _TASKS_PY.substitute(framework=FRAMEWORK, alias=repr(backend.alias), queue=repr(queue))
    (root / f"{TASKS_MODULE}.py").write_text(text)
    importlib.invalidate_caches()  # the folder was listed when the settings were imported
    tasks = importlib.import_module(TASKS_MODULE)
    return _Run(options=options, root=root, project=project, backend=backend, tasks=tasks)


def percentile(values: list[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) of ``values``, nearest-rank method."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def _enqueue(run: _Run, task: Any, args: tuple[Any, ...]) -> tuple[list[float], float, list[str]]:
    """Enqueue N ``task(*args)`` through ``Task.enqueue()``; return each call's ms, the rate and
    the ids."""
    clock = time.perf_counter_ns
    ids: list[str] = []
    calls_ms: list[float] = []
    begin = clock()
    for _ in range(run.options.n):
        start = clock()
        ids.append(task.enqueue(*args).id)
        calls_ms.append((clock() - start) / 1e6)
    return calls_ms, len(ids) / ((clock() - begin) / 1e9), ids


def _enqueues(run: _Run) -> tuple[dict[str, float], list[str], list[str]]:
    """N ``record`` tasks (the headline: arguments as a site passes them), then N no-ops."""
    run.tasks.stamp.enqueue()  # untimed: the connection (and the file) open here
    calls_ms, rate, ids = _enqueue(run, run.tasks.record, SITE_ARGS)
    _, noop_rate, noop_ids = _enqueue(run, run.tasks.noop, ())
    metrics = {"enqueue_per_s": rate, "enqueue_noop_per_s": noop_rate}
    metrics |= {
        "enqueue_p50_ms": percentile(calls_ms, 50),
        "enqueue_p99_ms": percentile(calls_ms, 99),
    }
    return metrics, ids, noop_ids


def _bulk(run: _Run) -> tuple[dict[str, float], list[str]]:
    """Enqueue N ``record`` jobs in one ``Store.enqueue()`` call, building the ``NewJob``s
    included."""
    task, args_json = run.tasks.record, json.dumps(list(SITE_ARGS))
    begin = time.perf_counter_ns()
    jobs = [
        NewJob(
            job_id=job_id,
            task_path=task.module_path,
            queue_name=task.queue_name,
            args_json=args_json,
        )
        for job_id in new_job_ids(run.options.n)
    ]
    run.backend.store.enqueue(jobs)
    rate = len(jobs) / ((time.perf_counter_ns() - begin) / 1e9)
    return {"bulk_per_s": rate}, [job.job_id for job in jobs]


def _drain(run: _Run, id_lists: list[list[str]], name: str, *flags: str) -> list[float]:
    """Drain with ``litetasks run --burst``; return tasks/s of each list of ids, by the tasks'
    own times."""
    try:
        code = run.start(name, "--burst", *flags).wait(_DRAIN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BenchError(f"The {name} did not finish in {_DRAIN_TIMEOUT_S:.0f} s.") from None
    if code != 0:
        raise BenchError(f"The {name} worker exited {code}: {run.log_tail(name)}")
    return [_rate(run, ids, name) for ids in id_lists]


def _rate(run: _Run, ids: list[str], name: str) -> float:
    jobs = [run.backend.store.get(job_id) for job_id in ids]
    done = [job for job in jobs if job.state is JobState.SUCCESSFUL]
    if len(done) < len(ids):
        raise BenchError(f"Only {len(done):,} of {len(ids):,} tasks succeeded in the {name}.")
    first = min(job.started_at_us or 0 for job in done)
    last = max(job.finished_at_us or 0 for job in done)
    return len(done) / (max(last - first, 1) / 1e6)


def _wait_started_ns(store: Store, job_id: str) -> int:
    """Wait for a ``stamp`` task to finish; return what it returned: when it started."""
    deadline = time.monotonic() + _WAIT_TIMEOUT_S
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job.state is JobState.SUCCESSFUL and job.return_json is not None:
            return int(json.loads(job.return_json))
        if job.state is JobState.FAILED:
            raise BenchError(f"A latency probe failed: {job.errors[-1].traceback.strip()}")
        time.sleep(0.002)
    raise BenchError(f"A latency probe did not run within {_WAIT_TIMEOUT_S:.0f} s.")


def _probe(run: _Run) -> list[float]:
    """Enqueue ``stamp`` tasks with random gaps; return each one's enqueue-to-start in ms."""
    store, stamp, rng = run.backend.store, run.tasks.stamp, random.Random(5)
    _wait_started_ns(store, stamp.enqueue().id)  # warm-up: the pool has imported the tasks
    time.sleep(run.options.settle_s)
    sent: list[tuple[str, int]] = []
    for _ in range(run.options.probes):
        before = time.time_ns()
        sent.append((stamp.enqueue().id, before))
        time.sleep(rng.uniform(*_GAP_S))
    return [(_wait_started_ns(store, job_id) - before) / 1e6 for job_id, before in sent]


def _serve(run: _Run) -> dict[str, float]:
    """Start the pool, wait for its workers' rows, probe its latency, then watch it idle."""
    proc, deadline = run.start("serve"), time.monotonic() + _WAIT_TIMEOUT_S
    while len(run.backend.store.get_workers()) < run.backend.config.worker.process_count:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"The pool did not start: {run.log_tail('serve')}")
        time.sleep(0.01)
    latencies = _probe(run)
    cpu_s, begin = _tree_cpu_s(proc.pid), time.monotonic()
    time.sleep(run.options.idle_s)
    idle_pct = (_tree_cpu_s(proc.pid) - cpu_s) / (time.monotonic() - begin) * 100
    if proc.poll() is not None:
        raise BenchError(f"The pool died while idle: {run.log_tail('serve')}")
    _stop(proc)
    quantiles = {f"latency_p{q}_ms": percentile(latencies, q) for q in (50, 95, 99)}
    return quantiles | {"idle_cpu_pct": idle_pct}


def _measure(run: _Run, progress: Callable[[str], None]) -> dict[str, float]:
    n, worker = run.options.n, run.backend.config.worker
    progress(f"Enqueueing {n:,} record(id, str, dict) and {n:,} noop() with Task.enqueue()")
    metrics, ids, noop_ids = _enqueues(run)
    progress(f"Draining {2 * n:,} tasks with 1 process x 1 thread")
    one = ("--processes", "1", "--threads", "1")
    metrics["drain_1x1_per_s"], metrics["drain_noop_1x1_per_s"] = _drain(
        run, [ids, noop_ids], "drain", *one
    )
    # That drain was our first child: this is its peak RSS, or its worker's if that is larger.
    metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    progress(f"Enqueueing {n:,} jobs with one Store.enqueue() call")
    bulk, ids = _bulk(run)
    pool = ("--processes", str(worker.processes), "--threads", str(worker.threads))
    progress(f"Draining {n:,} tasks with the pool")
    (metrics["drain_pool_per_s"],) = _drain(run, [ids], "pool drain", *pool)
    progress(f"Probing latency with {run.options.probes} tasks, then idling")
    return metrics | bulk | _serve(run)


def _remove(root: Path, path: Path | None, *, path_existed: bool) -> None:
    """Remove the run's folder, and the ``--path`` file or the jobs the run put in it."""
    shutil.rmtree(root, ignore_errors=True)
    if path is None:
        return
    if not path_existed:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(doorbell_path(path).parent, ignore_errors=True)
        return
    with contextlib.suppress(apsw.Error, LiteTasksError):
        db = open_connection(path, synchronous="NORMAL", busy_timeout_ms=5000)
        with contextlib.closing(db), immediate(db):
            db.execute(_FORGET_BENCH_JOBS, {"prefix": f"{TASKS_MODULE}.%"})


def _bench(options: BenchOptions, root: Path, status: Console) -> dict[str, Any]:
    load_before = [round(x, 2) for x in os.getloadavg()]
    with status.status("Setting up") as spinner:
        run = _prepare(root, options)
        try:
            metrics = _measure(run, spinner.update)
        finally:
            for proc in run.started:
                _stop(proc)
    return report(run, metrics, load_before)


def run_bench(options: BenchOptions) -> int:
    """Run the benchmark, print its table (and save its JSON), and return the exit code.

    Raises ``ConfigurationError`` when the settings or ``--path`` cannot be used.
    """
    if settings.configured:
        raise ConfigurationError(
            "Django settings are already loaded in this process, so the benchmark cannot point "
            "them at its own queue file. Run `litetasks bench` from a shell, not manage.py."
        )
    if options.json_path is not None and not options.json_path.parent.is_dir():
        raise ConfigurationError(f"The folder of --json {str(options.json_path)!r} does not exist.")
    if options.path is not None:
        options = dataclasses.replace(options, path=options.path.expanduser().resolve())
    path_existed = options.path is not None and _check_path(options.path)
    status = Console(stderr=True, highlight=False)
    root = Path(tempfile.mkdtemp(prefix="litetasks-bench-")).resolve()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # like Ctrl-C
    try:
        figures = _bench(options, root, status)
    except KeyboardInterrupt:
        status.print("Interrupted: the benchmark's workers are stopped and its files removed.")
        return 130
    except BenchError as exc:
        status.print(f"litetasks: error: {escape(str(exc))}", soft_wrap=True)
        return 1
    finally:
        _remove(root, options.path, path_existed=path_existed)
        signal.signal(signal.SIGTERM, previous)
    print_table(figures, Console(highlight=False))
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(figures, indent=2) + "\n")
    return 0
