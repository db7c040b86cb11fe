"""Measure one system: enqueue, bulk enqueue, drain, latency, idle CPU, peak RSS.

Each step runs in subprocesses started with the system's own environment; this process only
starts them, times the idle window and turns the raw figures into metrics.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procstat
from .measure import percentile
from .systems import PYTHON, REPO_ROOT, System

__all__ = ["BenchError", "Options", "litetasks_missing", "measure_system"]

PHASES = ("enqueue", "bulk", "drain", "pool", "latency")


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and where its log is."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """What to measure and how much."""

    n: int = 5000
    probes: int = 200
    idle_s: float = 10.0
    settle_s: float = 1.0
    phases: tuple[str, ...] = PHASES
    timeout_s: float = 600.0
    keep: bool = False


@dataclass(frozen=True, slots=True)
class _Context:
    system: System
    options: Options
    workdir: Path
    env: dict[str, str]

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"


def litetasks_missing() -> str | None:
    """Return why litetasks cannot be benchmarked here, or None when it can."""
    probe = subprocess.run(
        [
            PYTHON,
            "-c",
            "import litetasks._django.backend, litetasks.cli, litetasks._store.store",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode == 0:
        return None
    lines = probe.stderr.strip().splitlines()
    return lines[-1] if lines else f"import failed with exit code {probe.returncode}"


def measure_system(system: System, options: Options) -> dict[str, Any]:
    """Run every requested phase for ``system``; failures become notes, not exceptions."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{system.key}-"))
    env = {**os.environ, **system.prepare(workdir)}
    ctx = _Context(system, options, workdir, env)
    metrics: dict[str, float | None] = {}
    notes: list[str] = []
    try:
        system.setup(workdir, env, ctx.log("setup"))
        for phase in options.phases:
            try:
                metrics.update(_PHASE_RUNNERS[phase](ctx))
            except (BenchError, subprocess.SubprocessError, OSError) as exc:
                notes.append(f"{phase}: {exc}")
    except (subprocess.SubprocessError, OSError) as exc:
        notes.append(f"setup: {exc} (log: {ctx.log('setup')})")
    finally:
        if options.keep or notes:  # a failed phase's note points at logs in this folder
            notes.append(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return {
        "label": system.label,
        "settings": system.settings_note,
        "metrics": metrics,
        "notes": notes,
        "load_average_before": load_before,
    }


# -- subprocess plumbing -------------------------------------------------------------------


def _client(ctx: _Context, action: str, **flags: object) -> dict[str, Any]:
    out = ctx.workdir / f"{action}.json"
    argv = [PYTHON, "-m", "benchmarks.client", action, "--kind", ctx.system.kind]
    argv += ["--workdir", str(ctx.workdir), "--out", str(out)]
    for name, value in flags.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    log = ctx.log(f"client-{action}")
    with log.open("ab") as sink:
        done = subprocess.run(
            argv,
            cwd=ctx.workdir,
            env=ctx.env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=ctx.options.timeout_s,
            check=False,
        )
    if done.returncode != 0:
        raise BenchError(f"client {action} exited {done.returncode}: {_tail(log)}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _start(ctx: _Context, argv: tuple[str, ...], name: str, **env: str) -> subprocess.Popen[bytes]:
    with ctx.log(name).open("ab") as sink:
        return subprocess.Popen(
            argv,
            cwd=ctx.workdir,
            env={**ctx.env, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a hung worker's whole group can be killed
        )


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return f"(no log at {log})"
    return " | ".join(text[-lines:]) + f" (log: {log})"


# -- phases --------------------------------------------------------------------------------


def _enqueue(ctx: _Context) -> dict[str, float | None]:
    """N ``record`` tasks (the headline: arguments as a site passes them), then N no-ops."""
    raw = _client(ctx, "enqueue", n=ctx.options.n)
    calls_ms = [ns / 1e6 for ns in raw["call_ns"]]
    noop_ms = [ns / 1e6 for ns in raw["noop_call_ns"]]
    return {
        "enqueue_per_s": len(calls_ms) / (raw["total_ns"] / 1e9),
        "enqueue_p50_ms": percentile(calls_ms, 50),
        "enqueue_p99_ms": percentile(calls_ms, 99),
        "enqueue_noop_per_s": len(noop_ms) / (raw["noop_total_ns"] / 1e9),
        "enqueue_noop_p50_ms": percentile(noop_ms, 50),
    }


def _bulk(ctx: _Context) -> dict[str, float | None]:
    if ctx.system.bulk_note is None:
        return {"bulk_per_s": None}
    raw = _client(ctx, "bulk", n=ctx.options.n)
    insert_ns = raw["total_ns"] - raw["build_ns"]
    many = _client(ctx, "bulk-many", n=ctx.options.n)
    return {
        "bulk_per_s": ctx.options.n / (raw["total_ns"] / 1e9),
        "bulk_insert_only_per_s": ctx.options.n / (insert_ns / 1e9),
        "bulk_many_per_s": ctx.options.n / (many["total_ns"] / 1e9),
    }


def _drain(ctx: _Context) -> dict[str, float | None]:
    """Drain the tasks of the enqueue phase with one process and one thread: the ``record``
    tasks first (they were enqueued first), then the no-ops; a rate for each."""
    if "enqueue" not in ctx.options.phases:
        raise BenchError("the drain runs the tasks of the enqueue phase; add it to the phases.")
    started = time.monotonic()
    if ctx.system.kind == "huey":
        window, reaped = _drain_huey(ctx)
    else:
        window, reaped = _drain_django(ctx, ctx.system.drain_command, "drain")
    wall_s = time.monotonic() - started
    return {
        "drain_per_s": _window_rate(window["record"], ctx.options.n),
        "drain_noop_per_s": _window_rate(window["noop"], ctx.options.n),
        "drain_wall_per_s": 2 * ctx.options.n / wall_s,
        "peak_rss_mb": reaped.max_rss_kb / 1024,
    }


def _pool(ctx: _Context) -> dict[str, float | None]:
    """Enqueue N more tasks and drain them with the system's default pool."""
    if not ctx.system.pool_drain_command:
        return {"drain_pool_per_s": None}
    _client(ctx, "enqueue", n=ctx.options.n)
    window, _ = _drain_django(ctx, ctx.system.pool_drain_command, "pool")
    return {"drain_pool_per_s": _window_rate(window["record"], ctx.options.n)}


def _window_rate(window: dict[str, Any], n: int) -> float:
    if window.get("count") != n or not window.get("first_start_ns"):
        raise BenchError(f"only {window.get('count')} of {n} tasks finished: {window}")
    span_ns = int(window["last_finish_ns"]) - int(window["first_start_ns"])
    return n / (span_ns / 1e9)


def _drain_django(
    ctx: _Context, argv: tuple[str, ...], name: str
) -> tuple[dict[str, Any], procstat.Reaped]:
    """Run a worker that exits once the queue is empty, then read the tasks' own times."""
    reaped = procstat.reap(_start(ctx, argv, name), ctx.options.timeout_s)
    if reaped.returncode != 0:
        raise BenchError(f"worker exited {reaped.returncode}: {_tail(ctx.log(name))}")
    return _client(ctx, "drain-window"), reaped


def _drain_huey(ctx: _Context) -> tuple[dict[str, Any], procstat.Reaped]:
    """Huey has no burst mode: the consumer itself reports when the last task finished."""
    window_file = ctx.workdir / "window.json"
    proc = _start(
        ctx,
        ctx.system.serve_command,
        "drain",
        BENCH_HUEY_EXPECT=str(2 * ctx.options.n),
        BENCH_HUEY_WINDOW=str(window_file),
    )
    deadline = time.monotonic() + ctx.options.timeout_s
    while not window_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    reaped = procstat.stop(proc)
    if not window_file.exists():
        raise BenchError(f"the consumer did not finish the tasks: {_tail(ctx.log('drain'))}")
    window: dict[str, Any] = json.loads(window_file.read_text())
    return window, reaped


def _latency(ctx: _Context) -> dict[str, float | None]:
    """Serve, probe latency, then watch the idle worker's CPU; report its memory too."""
    proc = _start(ctx, ctx.system.serve_command, "serve")
    try:
        raw = _client(
            ctx,
            "latency",
            probes=ctx.options.probes,
            settle_s=ctx.options.settle_s,
            timeout_s=min(120.0, ctx.options.timeout_s),
        )
        if proc.poll() is not None:
            raise BenchError(f"the worker died: {_tail(ctx.log('serve'))}")
        before = procstat.tree_cpu_s(proc.pid)
        time.sleep(ctx.options.idle_s)
        idle_pct = (procstat.tree_cpu_s(proc.pid) - before) / ctx.options.idle_s * 100
        serve_rss_kb = procstat.peak_rss_kb(proc.pid)
    finally:
        procstat.stop(proc)
    latencies = raw["latency_ms"]
    return {
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "latency_p99_ms": percentile(latencies, 99),
        "latency_lost": float(raw["lost"]),
        "idle_cpu_pct": idle_pct,
        "serve_rss_mb": serve_rss_kb / 1024,
    }


_PHASE_RUNNERS = {
    "enqueue": _enqueue,
    "bulk": _bulk,
    "drain": _drain,
    "pool": _pool,
    "latency": _latency,
}
