"""Run a set of systems, round-robin, and fold the rounds into one result per system."""

from __future__ import annotations

import datetime
import statistics
import sys
from typing import Any

from . import machine
from .run import Options, litetasks_missing, measure_system
from .systems import System

__all__ = ["collect"]


def collect(
    systems: list[System], options: Options, *, repeat: int = 1, echo: bool = True
) -> dict[str, Any]:
    """Measure ``systems`` ``repeat`` times, round-robin; return the run as a JSON-ready dict.

    Rounds interleave the systems so that a change in machine load is shared out among them;
    each metric is the median over the rounds.
    """
    results = _header(options, repeat)
    for line in results["warnings"] if echo else ():
        print(f"warning: {line}", file=sys.stderr, flush=True)
    missing = litetasks_missing() if any(s.family == "litetasks" for s in systems) else None
    if missing is not None:
        results["skipped"].append(f"litetasks cannot be imported: {missing}")
        systems = [s for s in systems if s.family != "litetasks"]
    rounds: dict[str, list[dict[str, Any]]] = {s.key: [] for s in systems}
    for round_index in range(repeat):
        for system in systems:
            if echo:
                print(f"round {round_index + 1}/{repeat}: {system.label} ...", file=sys.stderr)
            rounds[system.key].append(measure_system(system, options))
    for system in systems:
        results["systems"][system.key] = _merge(rounds[system.key])
    results["load_average_after"] = machine.load_average()
    return results


def _header(options: Options, repeat: int) -> dict[str, Any]:
    """Start a run's record: when, where, with what options, and how busy the machine was."""
    load = machine.load_average()
    warning = machine.busy_warning(load)
    return {
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "config": {
            "n": options.n,
            "probes": options.probes,
            "idle_s": options.idle_s,
            "settle_s": options.settle_s,
            "phases": list(options.phases),
            "repeat": repeat,
        },
        "load_average_before": load,
        "warnings": [] if warning is None else [warning],
        "systems": {},
        "skipped": [],
    }


def _merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold one system's rounds into one entry: the median of each metric, every note."""
    keys = sorted({key for r in rounds for key in r["metrics"]})
    metrics: dict[str, float | None] = {}
    for key in keys:
        values = [r["metrics"][key] for r in rounds if r["metrics"].get(key) is not None]
        metrics[key] = statistics.median(values) if values else None
    return {
        "label": rounds[0]["label"],
        "settings": rounds[0]["settings"],
        "metrics": metrics,
        "rounds": [r["metrics"] for r in rounds],
        "load_average_before": [r["load_average_before"] for r in rounds],
        "notes": [note for r in rounds for note in r["notes"]],
    }
