"""Show results: a table with ratios to litetasks, a JSON file, a PNG chart."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

__all__ = ["METRICS", "Metric", "print_table", "ratio", "write_json", "write_png"]

BASELINE = "litetasks"


@dataclass(frozen=True, slots=True)
class Metric:
    """One row of the table."""

    key: str
    label: str
    unit: str
    higher_is_better: bool


METRICS = (
    Metric("enqueue_per_s", "enqueue record(id, str, dict), single calls", "tasks/s", True),
    Metric("enqueue_p50_ms", "enqueue call p50", "ms", False),
    Metric("enqueue_p99_ms", "enqueue call p99", "ms", False),
    Metric("enqueue_noop_per_s", "enqueue noop(), single calls", "tasks/s", True),
    Metric("bulk_per_s", "bulk enqueue, store-level", "tasks/s", True),
    Metric("bulk_many_per_s", "bulk enqueue, enqueue_many()", "tasks/s", True),
    Metric("drain_per_s", "drain record, 1 proc x 1 thread", "tasks/s", True),
    Metric("drain_noop_per_s", "drain noop, 1 proc x 1 thread", "tasks/s", True),
    Metric("drain_wall_per_s", "  both, wall clock incl. start-up", "tasks/s", True),
    Metric("drain_pool_per_s", "drain record, default pool", "tasks/s", True),
    Metric("latency_p50_ms", "enqueue-to-start p50", "ms", False),
    Metric("latency_p95_ms", "enqueue-to-start p95", "ms", False),
    Metric("latency_p99_ms", "enqueue-to-start p99", "ms", False),
    Metric("idle_cpu_pct", "idle worker CPU", "% of a core", False),
    Metric("peak_rss_mb", "peak RSS, draining worker", "MiB", False),
)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """Return ``value / baseline``, or None when either is missing or the baseline is 0."""
    if value is None or baseline is None or baseline == 0 or math.isnan(value):
        return None
    return value / baseline


def _format(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "N/A"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def _cell(value: float | None, baseline: float | None, is_baseline: bool) -> str:
    text = _format(value)
    share = ratio(value, baseline)
    if is_baseline or share is None:
        return text
    return f"{text} ({share:.2g}x)" if share < 10 else f"{text} ({share:,.0f}x)"


def build_table(results: dict[str, Any]) -> Table:
    """Return a table of every metric (rows) for every system (columns)."""
    systems = results["systems"]
    table = Table(
        title=f"N={results['config']['n']}; (ratio) = value / litetasks' value",
        box=box.MARKDOWN,
    )
    table.add_column("metric")
    table.add_column("unit")
    for key, system in systems.items():
        table.add_column(system["label"] if key != BASELINE else f"{system['label']} (base)")
    base = systems.get(BASELINE, {}).get("metrics", {})
    for metric in METRICS:
        row = [metric.label, metric.unit]
        for key, system in systems.items():
            value = system["metrics"].get(metric.key)
            row.append(_cell(value, base.get(metric.key), key == BASELINE))
        table.add_row(*row)
    return table


def print_table(results: dict[str, Any], console: Console | None = None) -> None:
    """Print the table, each system's settings, and any notes."""
    console = console or Console(width=200)
    console.print(build_table(results))
    for system in results["systems"].values():
        console.print(f"- {system['label']}: {system['settings']}", highlight=False)
        for note in system["notes"]:
            console.print(f"  ! {note}", highlight=False, markup=False)
    for line in results.get("skipped", []):
        console.print(f"skipped: {line}", highlight=False, markup=False)
    for line in results.get("warnings", []):
        console.print(f"warning: {line}", highlight=False, markup=False)


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write the whole run (machine, config, every system's metrics and notes)."""
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def write_png(results: dict[str, Any], path: Path) -> bool:
    """Draw one bar chart per metric; return False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    systems = results["systems"]
    labels = [system["label"] for system in systems.values()]
    columns = 4
    rows = math.ceil(len(METRICS) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows))
    for axis, metric in zip(axes.flat, METRICS, strict=False):
        measured = [system["metrics"].get(metric.key) for system in systems.values()]
        values = [value or 0.0 for value in measured]
        bars = axis.bar(range(len(values)), values, color=_colours(labels))
        axis.set_title(f"{metric.label.strip()}\n({metric.unit}, {_better(metric)})", fontsize=9)
        axis.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        axis.bar_label(bars, labels=[_format(v) for v in measured], fontsize=7)
        if _spans_decades(values):
            axis.set_yscale("log")
    for axis in list(axes.flat)[len(METRICS) :]:
        axis.axis("off")
    machine = results["machine"]
    figure.suptitle(
        f"litetasks vs peers, N={results['config']['n']}; {machine['cpu']}, "
        f"{machine['cores']} cores, Python {machine['python']}",
        fontsize=11,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _spans_decades(values: list[float]) -> bool:
    """Whether bars differ so much (over 50x) that a linear axis would hide the small ones."""
    positive = [v for v in values if v > 0]
    return len(positive) > 1 and max(positive) / min(positive) > 50


def _better(metric: Metric) -> str:
    return "higher is better" if metric.higher_is_better else "lower is better"


def _colours(labels: list[str]) -> list[str]:
    return ["tab:green" if label == BASELINE else "tab:gray" for label in labels]
