"""``litetasks bench``'s report: the machine, the settings, the figures, and their table."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

import apsw
import django
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from .. import __version__
from .._store.filesystems import mount_of

__all__ = ["print_table", "report"]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


def _filesystem(folder: Path) -> str:
    """Return the type and source of the filesystem holding ``folder`` (Linux), else "unknown"."""
    mount = mount_of(folder)
    return "unknown" if mount is None else " on ".join(mount)


def report(run: Any, metrics: dict[str, float], load_before: list[float]) -> dict[str, Any]:
    store, worker, options = run.backend.config.store, run.backend.config.worker, run.options
    return {
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "django": django.get_version(),
            "litetasks": __version__,
            "sqlite": apsw.sqlite_lib_version(),
            "queue_file": str(store.path),
            "filesystem": _filesystem(store.path.parent),
        },
        "settings": {
            "project": run.project,
            "backend": run.backend.alias,
            "synchronous": store.synchronous,
            "processes": worker.process_count,
            "threads": worker.threads,
            **{"n": options.n, "probes": options.probes, "idle_s": options.idle_s},
        },
        "metrics": {name: round(value, 4) for name, value in metrics.items()},
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
    }


_ROWS = (  # metric, label, unit, format
    (
        "enqueue_per_s",
        "enqueue record(id, str, dict), one call at a time",
        "tasks/s",
        ",.0f",
    ),
    ("enqueue_p50_ms", "  per call, p50", "ms", ".3f"),
    ("enqueue_p99_ms", "  per call, p99", "ms", ".3f"),
    ("enqueue_noop_per_s", "enqueue noop(), one call at a time", "tasks/s", ",.0f"),
    ("bulk_per_s", "bulk enqueue, one Store.enqueue() of N record jobs", "tasks/s", ",.0f"),
    ("drain_1x1_per_s", "drain record tasks, 1 process x 1 thread", "tasks/s", ",.0f"),
    ("drain_noop_1x1_per_s", "drain noop tasks, 1 process x 1 thread", "tasks/s", ",.0f"),
    ("drain_pool_per_s", "drain record tasks, the pool ({pool})", "tasks/s", ",.0f"),
    ("latency_p50_ms", "enqueue-to-start on the idle pool, p50", "ms", ".2f"),
    ("latency_p95_ms", "  p95", "ms", ".2f"),
    ("latency_p99_ms", "  p99", "ms", ".2f"),
    ("idle_cpu_pct", "idle pool CPU over {idle_s:g} s", "% of a core", ".3f"),
    ("peak_rss_mb", "peak RSS of the 1 x 1 worker", "MiB", ".1f"),
)


def print_table(report: dict[str, Any], console: Console) -> None:
    machine, given = report["machine"], report["settings"]
    processes, threads = given["processes"], given["threads"]
    pool = f"{processes} process{'es' * (processes > 1)} x {threads} thread{'s' * (threads > 1)}"
    project = given["project"] or "none found, so a throwaway project"
    console.print(
        f"[bold]litetasks bench[/] {machine['litetasks']}: N={given['n']:,}, "
        f"synchronous={given['synchronous']}, {given['probes']} latency probes\n"
        f"Settings: {escape(project)}, backend {escape(repr(given['backend']))}\n"
        f"Machine:  {escape(machine['cpu'])}, {machine['cores']} cores, Python "
        f"{machine['python']}, Django {machine['django']}, SQLite {machine['sqlite']}\n"
        f"Queue:    {escape(machine['queue_file'])} on {escape(machine['filesystem'])}",
        soft_wrap=True,
    )
    table = Table("measure", Column("value", justify="right"), "unit")
    for key, label, unit, spec in _ROWS:
        text = label.format(pool=pool, idle_s=given["idle_s"])
        table.add_row(text, format(report["metrics"][key], spec), unit)
    console.print(table)
    load = report["load_average"]["before"][0]
    if load > (machine["cores"] or 1) / 2:
        console.print(
            f"Load average {load} on {machine['cores']} cores before the run: other work was "
            "running, so these figures are lower and noisier than on a quiet machine."
        )
