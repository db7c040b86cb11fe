"""Describe the machine a run happened on, so figures are never quoted without it."""

from __future__ import annotations

import os
import platform
import sqlite3
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .measure import percentile

__all__ = ["busy_warning", "describe", "load_average"]

PACKAGES = ("litetasks", "Django", "django-tasks-db", "huey", "apsw")


def describe() -> dict[str, Any]:
    """Return CPU, kernel, Python, SQLite and package versions, and the cost of one fsync."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite_stdlib": sqlite3.sqlite_version,
        "sqlite_apsw": _apsw_sqlite(),
        "packages": {name: _version(name) for name in PACKAGES},
        "tmp_dir": tempfile.gettempdir(),
        "tmp_filesystem": _filesystem(Path(tempfile.gettempdir())),
        "fsync_4k_ms": _fsync_cost(),
    }


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def busy_warning(load: list[float]) -> str | None:
    """Say so when other work already keeps the machine busy: figures will be noisy."""
    cores = os.cpu_count() or 1
    if load[0] <= cores / 4:
        return None
    return (
        f"load average {load[0]} on {cores} cores before the run: other work is running, so "
        "rates will be lower and noisier than on a quiet machine (use --repeat 3 and compare "
        "ratios)."
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _apsw_sqlite() -> str | None:
    try:
        import apsw
    except ImportError:
        return None
    return str(apsw.sqlite_lib_version())


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _filesystem(path: Path) -> str | None:
    """Return the filesystem type and device of the longest mount holding ``path``."""
    best: tuple[int, str] | None = None
    resolved = str(path.resolve())
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        mount = fields[4]
        if (resolved == mount or resolved.startswith(mount.rstrip("/") + "/")) and (
            best is None or len(mount) > best[0]
        ):
            best = (len(mount), f"{tail[0]} on {tail[1]} ({mount})")
    return None if best is None else best[1]


def _fsync_cost(rounds: int = 100) -> dict[str, float]:
    """Time ``rounds`` write+fsync pairs of 4 KiB in the temp folder: what one commit pays."""
    costs: list[float] = []
    block = os.urandom(4096)
    with tempfile.NamedTemporaryFile() as handle:
        for _ in range(rounds):
            os.pwrite(handle.fileno(), block, 0)
            begin = time.perf_counter_ns()
            os.fsync(handle.fileno())
            costs.append((time.perf_counter_ns() - begin) / 1e6)
    return {"p50": round(percentile(costs, 50), 3), "p99": round(percentile(costs, 99), 3)}
