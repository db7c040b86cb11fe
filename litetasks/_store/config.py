"""Settings for the store and the workers: frozen values, parsed and checked once.

This module is the only home of defaults. ``from_options`` turns a backend's ``OPTIONS`` dict
into ``BackendConfig``; the CLI then overrides the worker part with its flags.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError

__all__ = ["OPTION_NAMES", "BackendConfig", "StoreConfig", "WorkerConfig", "from_options"]

SYNCHRONOUS_MODES = ("NORMAL", "FULL")
DEFAULT_RESULTS_TTL_S = 7 * 86400.0
# A task a worker does not find in its code goes back to READY after each of these delays (4
# min in all; that worker leaves it to others for twice each), for a worker that has it
# (another project's, or a pool restarted on new code), then FAILED with TaskNotFound.
DEFAULT_NOT_FOUND_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """How to open the queue file."""

    path: Path
    synchronous: str = "NORMAL"
    busy_timeout_ms: int = 5000


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """How a worker pool runs. ``queues=None`` serves every queue of the backend."""

    processes: int = 0  # 0: one per core
    threads: int = 4
    queues: tuple[str, ...] | None = None
    burst: bool = False
    lease_s: float = 60.0
    heartbeat_s: float = 5.0
    poll_interval_s: float = 1.0
    grace_s: float = 30.0
    max_tasks_per_child: int = 0  # 0: never recycle
    max_memory_per_child_mb: int = 0  # 0: never recycle
    prefetch: int = 0  # jobs always claimed ahead per process, beyond one per thread
    results_ttl_s: float | None = DEFAULT_RESULTS_TTL_S  # None: keep finished results forever
    interrupt_grace_s: float = 5.0  # a timed-out or cancelled task gets this long to stop

    def __post_init__(self) -> None:
        if self.heartbeat_s * 2 > self.lease_s:
            raise ConfigurationError(
                "lease_s must be at least twice heartbeat_s, so one late heartbeat cannot lose "
                f"a live worker its tasks (got lease_s={self.lease_s}, "
                f"heartbeat_s={self.heartbeat_s})."
            )

    @property
    def process_count(self) -> int:
        return self.processes or (os.cpu_count() or 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendConfig:
    """Everything a backend's ``OPTIONS`` configure."""

    store: StoreConfig
    worker: WorkerConfig
    autorun: bool | None = None  # None: run under runserver when DEBUG is on
    autorun_grace_s: float = 5.0  # running tasks' time to finish when runserver reloads or stops
    task_modules: tuple[str, ...] = ()
    periodic: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # see periodic.py
    not_found_delays_s: tuple[float, ...] = DEFAULT_NOT_FOUND_DELAYS_S


# name -> (type, check, rule text). The rule text completes "... must be ...".
_POSITIVE_INT = (int, lambda v: v > 0, "a whole number greater than 0")
_NON_NEGATIVE_INT = (int, lambda v: v >= 0, "a whole number, 0 or more")
_POSITIVE_SECONDS = (float, lambda v: v > 0 and math.isfinite(v), "a number of seconds above 0")
_OPTIONS: dict[str, tuple[type | tuple[type, ...], Any, str]] = {
    "path": (str, bool, "a file path"),
    "synchronous": (str, lambda v: v.upper() in SYNCHRONOUS_MODES, "'NORMAL' or 'FULL'"),
    "busy_timeout_ms": _POSITIVE_INT,
    "processes": _NON_NEGATIVE_INT,
    "threads": _POSITIVE_INT,
    "lease_s": _POSITIVE_SECONDS,
    "heartbeat_s": _POSITIVE_SECONDS,
    "poll_interval_s": (float, lambda v: 0 < v <= 1, "a number of seconds above 0, at most 1"),
    "grace_s": (float, lambda v: v >= 0 and math.isfinite(v), "a number of seconds, 0 or more"),
    "max_tasks_per_child": _NON_NEGATIVE_INT,
    "max_memory_per_child_mb": _NON_NEGATIVE_INT,
    "prefetch": _NON_NEGATIVE_INT,
    "interrupt_grace_s": _POSITIVE_SECONDS,
    "results_ttl": (
        object,
        lambda v: v is None or (_seconds(v) or 0) > 0,
        "a number of seconds above 0, a timedelta, or None (keep finished results forever)",
    ),
    "autorun": (bool, lambda v: True, "True or False"),
    "autorun_grace_s": (float, lambda v: 0 <= v <= 60, "a number of seconds from 0 to 60"),
    "periodic": (
        dict,
        lambda v: all(isinstance(name, str) and name for name in v),
        "a dict of schedules by name (see 'Periodic tasks' in the README)",
    ),
    "task_modules": (
        list,
        lambda v: all(isinstance(m, str) and m for m in v),
        "a list of module names",
    ),
    "not_found_delays": (
        (list, tuple),
        lambda v: len(v) <= 100 and all(_is_delay(d) for d in v),
        "a list of at most 100 delays in seconds (numbers, 0 or more)",
    ),
}
OPTION_NAMES = tuple(sorted(_OPTIONS))
_WORKER_FIELDS = {f.name for f in dataclasses.fields(WorkerConfig)}


def from_options(alias: str, options: Mapping[str, Any], *, default_path: Path) -> BackendConfig:
    """Parse a backend's ``OPTIONS``; raise ``ConfigurationError`` naming the bad key and value."""
    if not isinstance(options, Mapping):
        raise ConfigurationError(
            f"TASKS[{alias!r}]['OPTIONS'] must be a dict (got {type(options).__name__})."
        )
    values = {name: _checked(alias, name, value) for name, value in options.items()}
    path = Path(values.pop("path", default_path)).expanduser()
    store = StoreConfig(
        path=path if path.is_absolute() else Path.cwd() / path,
        synchronous=values.pop("synchronous", "NORMAL").upper(),
        busy_timeout_ms=values.pop("busy_timeout_ms", 5000),
    )
    if "results_ttl" in values:
        values["results_ttl_s"] = _seconds(values.pop("results_ttl"))
    autorun = values.pop("autorun", None)
    autorun_grace_s = values.pop("autorun_grace_s", 5.0)
    task_modules = tuple(values.pop("task_modules", ()))
    periodic = dict(values.pop("periodic", {}))
    delays = values.pop("not_found_delays", DEFAULT_NOT_FOUND_DELAYS_S)
    not_found_delays_s = tuple(float(delay) for delay in delays)
    worker_values = {k: v for k, v in values.items() if k in _WORKER_FIELDS}
    try:
        worker = WorkerConfig(**worker_values)
    except ConfigurationError as exc:
        raise ConfigurationError(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None
    return BackendConfig(
        store=store,
        worker=worker,
        autorun=autorun,
        autorun_grace_s=autorun_grace_s,
        task_modules=task_modules,
        periodic=periodic,
        not_found_delays_s=not_found_delays_s,
    )


def _is_delay(value: Any) -> bool:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return is_number and math.isfinite(value) and value >= 0


def _seconds(value: Any) -> float | None:
    """Seconds from a number or a timedelta; None for anything else (or None)."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _checked(alias: str, name: str, value: Any) -> Any:
    where = f"TASKS[{alias!r}]['OPTIONS'][{name!r}]"
    if name not in _OPTIONS:
        raise ConfigurationError(
            f"Unknown option {name!r} in TASKS[{alias!r}]['OPTIONS']. "
            f"Valid options: {', '.join(OPTION_NAMES)}."
        )
    kind, check, rule = _OPTIONS[name]
    if name == "path" and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)) or not check(value):
        raise ConfigurationError(f"{where} must be {rule} (got {value!r}).")
    return value
