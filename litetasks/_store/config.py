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
from typing import Any, Literal

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
    # The queue file's mode (its -wal and -shm get it too), and its doorbell's: 0o660 lets a
    # web server and a worker running as different users of one group share the queue.
    file_mode: int = 0o600


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
    # Under Django's test runner: None, a fresh file per test process; False, ``store.path``.
    test_path: Path | Literal[False] | None = None
    autorun_grace_s: float = 5.0  # running tasks' time to finish when runserver reloads or stops
    task_modules: tuple[str, ...] = ()
    periodic: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # see periodic.py
    not_found_delays_s: tuple[float, ...] = DEFAULT_NOT_FOUND_DELAYS_S
    # OPTIONS["redact"] as given (None: the defaults); its entries are checked by a system
    # check (litetasks.E020), shown with redaction.redaction_keys().
    redact: tuple[Any, ...] | None = None
    metrics_token: str | None = None  # lets a scraper read litetasks.metrics.view


# name -> (type, check, rule text). The rule text completes "... must be ...".
_POSITIVE_INT = (int, lambda v: v > 0, "a whole number greater than 0")
_NON_NEGATIVE_INT = (int, lambda v: v >= 0, "a whole number, 0 or more")
_POSITIVE_SECONDS = (float, lambda v: v > 0 and math.isfinite(v), "a number of seconds above 0")
_OPTIONS: dict[str, tuple[type | tuple[type, ...], Any, str]] = {
    "path": (str, bool, "a file path"),
    "test_path": (
        (str, bool, type(None)),
        lambda v: v is None or v is False or (isinstance(v, str) and bool(v)),
        "a file path, None (a fresh file per test process) or False (tests use 'path')",
    ),
    "synchronous": (str, lambda v: v.upper() in SYNCHRONOUS_MODES, "'NORMAL' or 'FULL'"),
    "busy_timeout_ms": _POSITIVE_INT,
    "file_mode": (
        int,
        lambda v: v & ~0o660 == 0 and v & 0o600 == 0o600,
        "a file mode with read and write for the owner and at most read and write for the "
        "group, such as 0o600 (the default) or 0o660",
    ),
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
    "metrics_token": (str, lambda v: len(v) >= 16, "a string of 16 characters or more"),
    "not_found_delays": (
        (list, tuple),
        lambda v: len(v) <= 100 and all(_is_delay(d) for d in v),
        "a list of at most 100 delays in seconds (numbers, 0 or more)",
    ),
    "redact": ((list, tuple), lambda v: True, "a list of keys whose values are hidden"),
}
OPTION_NAMES = tuple(sorted(_OPTIONS))
_WORKER_FIELDS = {f.name for f in dataclasses.fields(WorkerConfig)}


def from_options(
    alias: str, options: Mapping[str, Any], *, default_path: Path, base_dir: Path | None = None
) -> BackendConfig:
    """Parse a backend's ``OPTIONS``; raise ``ConfigurationError`` naming the bad key and value.

    A relative ``path`` is relative to ``base_dir`` (the project's ``BASE_DIR``), never to the
    current folder: each command would use a different file. Without ``base_dir`` it is refused.
    """
    if not isinstance(options, Mapping):
        raise ConfigurationError(
            f"TASKS[{alias!r}]['OPTIONS'] must be a dict (got {type(options).__name__})."
        )
    values = {name: _checked(alias, name, value) for name, value in options.items()}
    store = _store_config(alias, values, default_path, base_dir)
    test_path = values.pop("test_path", None)
    if test_path:
        test_path = _absolute(alias, "test_path", test_path, base_dir)
    if "results_ttl" in values:
        values["results_ttl_s"] = _seconds(values.pop("results_ttl"))
    autorun = values.pop("autorun", None)
    autorun_grace_s = values.pop("autorun_grace_s", 5.0)
    task_modules = tuple(values.pop("task_modules", ()))
    periodic = dict(values.pop("periodic", {}))
    delays = values.pop("not_found_delays", DEFAULT_NOT_FOUND_DELAYS_S)
    not_found_delays_s = tuple(float(delay) for delay in delays)
    redact = values.pop("redact", None)
    metrics_token = values.pop("metrics_token", None)
    return BackendConfig(
        store=store,
        worker=_worker_config(alias, values),
        autorun=autorun,
        test_path=test_path,
        autorun_grace_s=autorun_grace_s,
        task_modules=task_modules,
        periodic=periodic,
        not_found_delays_s=not_found_delays_s,
        redact=None if redact is None else tuple(redact),
        metrics_token=metrics_token,
    )


def _store_config(
    alias: str, values: dict[str, Any], default_path: Path, base_dir: Path | None
) -> StoreConfig:
    """Take the queue file's options out of the checked ``values`` (the rest stay there)."""
    return StoreConfig(
        path=_absolute(alias, "path", values.pop("path", default_path), base_dir),
        synchronous=values.pop("synchronous", "NORMAL").upper(),
        busy_timeout_ms=values.pop("busy_timeout_ms", 5000),
        file_mode=values.pop("file_mode", 0o600),
    )


def _worker_config(alias: str, values: Mapping[str, Any]) -> WorkerConfig:
    """The worker settings among the checked ``values``; an inconsistent set is refused with
    the backend's alias in the message."""
    worker_values = {k: v for k, v in values.items() if k in _WORKER_FIELDS}
    try:
        return WorkerConfig(**worker_values)
    except ConfigurationError as exc:
        raise ConfigurationError(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None


def _absolute(alias: str, name: str, value: str | Path, base_dir: Path | None) -> Path:
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    if base_dir is None:
        raise ConfigurationError(
            f"TASKS[{alias!r}]['OPTIONS'][{name!r}] is a relative path ({str(path)!r}) and the "
            "settings have no BASE_DIR to resolve it against; a relative path would name a "
            "different file in each folder a command runs from. Give an absolute path, such as "
            f"BASE_DIR / {str(path)!r} with BASE_DIR = Path(__file__).resolve().parent.parent."
        )
    return Path(base_dir) / path


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
    if name in ("path", "test_path") and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)) or not check(value):
        raise ConfigurationError(f"{where} must be {rule} (got {value!r}).")
    return value
