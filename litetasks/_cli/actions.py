"""What ``litetasks retry``, ``cancel``, ``prune``, ``backup`` and ``merge`` do, apart from
parsing their arguments."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .._store.copies import backup, merge
from .._store.records import JobState
from ..exceptions import ConfigurationError

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend

__all__ = [
    "backup_queue",
    "cancel_tasks",
    "describe_duration",
    "merge_copy",
    "parse_duration",
    "prune_results",
    "retry_tasks",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """Parse ``90``, ``45s``, ``30m``, ``12h``, ``7d`` or ``2w`` into a timedelta."""
    match = _DURATION.match(text.lower())
    if not match:
        raise ConfigurationError(
            f"Cannot read the duration {text!r}: use a number with an optional unit, "
            "such as 45s, 30m, 12h, 7d or 2w."
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def retry_tasks(
    backend: SQLiteBackend, ids: Sequence[str], *, failed: bool, queues: Sequence[str]
) -> int:
    """Retry FAILED tasks by id, or every FAILED one; print one line each; return the exit code."""
    if failed == bool(ids):
        raise ConfigurationError("Give task ids or --failed (one of the two).")
    if failed:
        ids = backend.store.failed_job_ids(queues=queues or None)
        if not ids:
            typer.echo("No FAILED tasks.")
            return 0
    results = backend.retry(ids)
    for job_id, outcome in results.items():
        typer.echo(f"{job_id}: {outcome}")
    retried = sum(1 for outcome in results.values() if outcome == "retried")
    typer.echo(f"{retried} of {len(results)} task(s) retried.")
    # One rule for scripts: 0 when every task named runs again, 1 when any does not (unknown,
    # or not FAILED: READY, RUNNING, SUCCESSFUL, or a unique task whose twin is waiting).
    return 0 if retried == len(results) else 1


def cancel_tasks(backend: SQLiteBackend, ids: Sequence[str]) -> int:
    """Cancel tasks by id; print what happened to each; return the exit code."""
    if not ids:
        raise ConfigurationError("Give the ids of the tasks to cancel.")
    results = backend.cancel(ids)
    for job_id, outcome in results.items():
        typer.echo(f"{job_id}: {outcome}")
    return 1 if any(str(outcome) == "not found" for outcome in results.values()) else 0


def prune_results(backend: SQLiteBackend, older_than: str | None, statuses: Sequence[str]) -> int:
    """Delete finished results older than ``older_than`` (default: ``results_ttl``)."""
    if older_than is not None:
        age = parse_duration(older_than)
    elif backend.config.worker.results_ttl_s is not None:
        age = timedelta(seconds=backend.config.worker.results_ttl_s)
    else:
        raise ConfigurationError(
            "results_ttl is None (keep results forever): say how old results must be to go, "
            "with --older-than (e.g. 30d)."
        )
    chosen = [s.upper() for s in statuses] or ["SUCCESSFUL", "FAILED"]
    finished = [state.value for state in JobState if state.is_finished]
    for status in chosen:
        if status not in finished:
            raise ConfigurationError(
                f"--status {status} cannot be pruned: only {' and '.join(finished)} results "
                "are (READY and RUNNING tasks are never deleted)."
            )
    deleted = backend.prune(older_than=age, statuses=chosen)
    typer.echo(
        f"Deleted {deleted} {' and '.join(chosen)} result(s) that finished more than "
        f"{describe_duration(age)} ago."
    )
    return 0


def describe_duration(age: timedelta) -> str:
    """``7 days``, ``36 hours``, ``90 minutes``, ``45 seconds``, ``1.5 seconds``: the largest
    unit that divides ``age`` whole (seconds otherwise)."""
    seconds = age.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    text = f"{seconds:g}"
    return f"{text} second{'' if text == '1' else 's'}"


def backup_queue(backend: SQLiteBackend, dest: Path, *, force: bool) -> int:
    """Copy the live queue file to ``dest``; print what was copied."""
    store = backend.config.store
    copied = backup(store.path, dest, force=force, busy_timeout_ms=store.busy_timeout_ms)
    typer.echo(
        f"Copied {_tasks(copied.counts)} from {str(store.path)!r} to {str(copied.path)!r} "
        f"({copied.size_bytes / 1e6:.1f} MB) in {copied.seconds:.2f} s."
    )
    return 0


def merge_copy(backend: SQLiteBackend, saved: Path) -> int:
    """Add the tasks of the copy ``saved`` that the queue file lacks; print what was added."""
    store = backend.config.store
    merged = merge(
        store.path, saved, synchronous=store.synchronous, busy_timeout_ms=store.busy_timeout_ms
    )
    added = sum(merged.added.values())
    there = merged.saved_jobs - added - len(merged.twins)
    typer.echo(
        f"Added {_tasks(merged.added) if added else 'no tasks'} of the {merged.saved_jobs:,} in "
        f"{str(saved)!r} to {str(store.path)!r}; {there:,} were there already."
    )
    if merged.twins:
        typer.echo(
            f"Skipped {len(merged.twins):,} unique task(s) whose twin is READY or RUNNING in the "
            f"queue file: {', '.join(merged.twins)}."
        )
    return 0


def _tasks(counts: Mapping[str, int]) -> str:
    """``12 tasks (READY 10, SUCCESSFUL 2)``, states in the order of ``JobState``."""
    parts = [
        f"{state.value} {counts[state.value]:,}" for state in JobState if counts.get(state.value)
    ]
    total = sum(counts.values())
    return f"{total:,} task{'s' if total != 1 else ''}" + (
        f" ({', '.join(parts)})" if parts else ""
    )
