"""Tests of the harness's own logic (no peers needed): ``python -m pytest benchmarks/tests``."""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import procstat
from benchmarks.guard import checks, verdict
from benchmarks.measure import percentile, wait_for_all
from benchmarks.report import build_table, ratio
from benchmarks.suite import _merge
from benchmarks.sustained import next_rate
from benchmarks.systems import SYSTEMS, select


@pytest.mark.parametrize(
    ("q", "expected"), [(0, 1), (1, 1), (50, 50), (95, 95), (99, 99), (100, 100)]
)
def test_percentile_uses_the_nearest_rank(q: float, expected: float) -> None:
    assert percentile([float(v) for v in range(100, 0, -1)], q) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


@pytest.mark.parametrize(
    ("value", "baseline", "expected"),
    [(10.0, 5.0, 2.0), (None, 5.0, None), (5.0, None, None), (5.0, 0.0, None)],
)
def test_ratio_is_value_over_baseline_or_none(
    value: float | None, baseline: float | None, expected: float | None
) -> None:
    assert ratio(value, baseline) == expected


def test_select_takes_families_and_keys() -> None:
    assert [s.key for s in select("huey")] == ["huey", "huey-normal"]
    assert [s.key for s in select("dtdb-wal,huey-normal")] == ["dtdb-wal", "huey-normal"]
    assert [s.key for s in select("litetasks")] == ["litetasks", "litetasks-full"]
    assert len(select(None)) == len(SYSTEMS)


def test_select_names_the_unknown_system_and_the_choices() -> None:
    with pytest.raises(SystemExit, match=r"Unknown system\(s\) in --only: rq\. Choose from: "):
        select("huey,rq")


def test_every_settings_module_is_python_and_points_into_its_folder(tmp_path: Path) -> None:
    for system in SYSTEMS:
        if system.kind != "django":
            continue
        env = system.prepare(tmp_path)
        text = (tmp_path / "benchsettings.py").read_text()
        ast.parse(text)
        assert "{workdir}" not in text
        assert str(tmp_path) in text
        assert env["DJANGO_SETTINGS_MODULE"] == "benchsettings"


def test_merge_takes_medians_and_keeps_every_note() -> None:
    rounds: list[dict[str, Any]] = [
        {"label": "x", "settings": "s", "metrics": {"a": 1.0, "b": None}, "notes": ["n1"]},
        {"label": "x", "settings": "s", "metrics": {"a": 3.0, "b": None}, "notes": []},
        {"label": "x", "settings": "s", "metrics": {"a": 2.0, "b": None}, "notes": ["n3"]},
    ]
    for r in rounds:
        r["load_average_before"] = [0.0, 0.0, 0.0]
    merged = _merge(rounds)
    assert merged["metrics"] == {"a": 2.0, "b": None}
    assert merged["notes"] == ["n1", "n3"]
    assert len(merged["rounds"]) == 3


def _results(**rates: dict[str, float | None]) -> dict[str, object]:
    return {"systems": {key: {"metrics": value, "notes": []} for key, value in rates.items()}}


def test_guard_checks_pass_fail_and_missing() -> None:
    results = _results(
        litetasks={"enqueue_per_s": 10_000.0, "drain_per_s": 1_000.0},
        dtdb={"enqueue_per_s": 500.0, "drain_per_s": 200.0},
        **{"huey-normal": {"enqueue_per_s": 10_000.0, "drain_per_s": None}},
    )
    found = {(c.metric, c.peer): c for c in checks(results, {"dtdb": 10.0, "huey-normal": 0.8})}
    assert found["enqueue_per_s", "dtdb"].passed  # 20x
    assert not found["drain_per_s", "dtdb"].passed  # 5x
    assert found["enqueue_per_s", "huey-normal"].passed  # 1x
    assert found["drain_per_s", "huey-normal"].value is None


def test_guard_report_only_checks_are_shown_but_never_fail() -> None:
    results = _results(
        litetasks={"enqueue_per_s": 700.0, "drain_per_s": 3_000.0},
        dtdb={"enqueue_per_s": 10.0, "drain_per_s": 10.0},
        **{"huey-normal": {"enqueue_per_s": 1_000.0, "drain_per_s": 1_000.0}},
    )
    floors = {"dtdb": 10.0, "huey-normal": 0.8}
    low = frozenset({("enqueue_per_s", "huey-normal")})
    found = {(c.metric, c.peer): c for c in checks(results, floors, low)}
    below = found["enqueue_per_s", "huey-normal"]
    assert (below.value, below.enforced, below.passed) == (0.7, False, True)
    assert all(c.enforced and c.passed for key, c in found.items() if key not in low)
    strict = {(c.metric, c.peer): c for c in checks(results, floors)}
    assert not strict["enqueue_per_s", "huey-normal"].passed


def test_guard_fails_only_on_a_floor_missed_in_every_measurement() -> None:
    floors = {"dtdb": 10.0, "huey-normal": 0.8}

    def measured(enqueue: float | None, drain: float) -> list[Any]:
        return checks(
            _results(
                litetasks={"enqueue_per_s": enqueue, "drain_per_s": drain},
                dtdb={"enqueue_per_s": 1.0, "drain_per_s": 1.0},
                **{"huey-normal": {"enqueue_per_s": 100.0, "drain_per_s": 100.0}},
            ),
            floors,
        )

    slow_once = measured(75.0, 150.0)  # enqueue 0.75x huey: missed
    assert verdict([slow_once]) == 1
    assert verdict([slow_once, measured(90.0, 150.0)]) == 0  # not missed again: noise
    assert verdict([slow_once, measured(79.0, 150.0)]) == 1  # missed again: a regression
    # A floor missed in one measurement and another in the next: neither missed twice.
    assert verdict([slow_once, measured(90.0, 70.0)]) == 0
    assert verdict([measured(None, 150.0)]) == 2
    assert verdict([measured(None, 150.0), measured(90.0, 150.0)]) == 0


def test_table_shows_ratios_to_litetasks_and_na() -> None:
    results = {
        "config": {"n": 10},
        "systems": {
            "litetasks": {"label": "litetasks", "metrics": {"enqueue_per_s": 1000.0}},
            "dtdb": {"label": "dtdb", "metrics": {"enqueue_per_s": 100.0}},
        },
    }
    table = build_table(results)
    cells = [list(column.cells) for column in table.columns]
    assert cells[2][0] == "1,000"
    assert cells[3][0] == "100 (0.1x)"
    assert cells[3][3] == "N/A"


def test_wait_for_all_returns_starts_in_order_and_none_after_the_timeout() -> None:
    answers: dict[str, list[int | None]] = {"a": [None, 5], "b": [7], "c": [None] * 1000}

    def started(handle: str) -> int | None:
        values = answers[handle]
        return values.pop(0) if len(values) > 1 else values[0]

    assert wait_for_all(["a", "b", "c"], started, timeout_s=0.05) == [5, 7, None]


def test_reap_reports_the_peak_rss_of_the_child() -> None:
    code = "b = bytearray(64 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    reaped = procstat.reap(proc, timeout_s=30)
    assert reaped.returncode == 0
    assert not reaped.timed_out
    assert reaped.max_rss_kb > 64 * 1024


def test_reap_kills_a_child_that_outlives_its_timeout() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    reaped = procstat.reap(proc, timeout_s=0.2)
    assert reaped.timed_out
    assert reaped.returncode == -9


def test_tree_cpu_counts_a_busy_child() -> None:
    code = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    procstat.reap(proc, timeout_s=30)  # reaped by us: its time is in our cutime now
    assert procstat.tree_cpu_s(os.getpid()) >= 0.3


def test_the_guard_checks_eight_producers_against_huey_and_one_producer() -> None:
    from benchmarks.guard import PRODUCERS, SINGLE

    results = {
        "systems": {
            "litetasks": {"metrics": {PRODUCERS: 9_000.0}},
            "huey-normal": {"metrics": {PRODUCERS: 10_000.0}},
            SINGLE: {"metrics": {PRODUCERS: 20_000.0}},
        }
    }

    found = {
        (c.metric, c.peer): c
        for c in checks(results, {"huey-normal": 0.5, SINGLE: 0.6}, metrics=(PRODUCERS,))
    }

    assert found[PRODUCERS, "huey-normal"].passed  # 0.9x against 0.5
    assert found[PRODUCERS, SINGLE].value == 0.45
    assert not found[PRODUCERS, SINGLE].passed  # 0.45x of its own single producer


def test_producers_summary_has_aggregate_percentiles_and_fairness() -> None:
    from benchmarks.producers import summarise

    fast = {"start_ns": 0, "end_ns": 1_000_000_000, "call_ns": [1_000_000] * 100}
    slow = {"start_ns": 0, "end_ns": 4_000_000_000, "call_ns": [1_000_000] * 99 + [9_000_000]}

    figures = summarise([fast, slow])

    assert figures["aggregate_per_s"] == 50.0  # 200 calls over 4 s
    assert (figures["p50_ms"], figures["max_ms"]) == (1.0, 9.0)
    assert figures["fair"] == 0.0  # 25/s against a mean of 62.5/s: below half
    assert summarise([fast, fast])["fair"] == 1.0


def test_sustained_rates_rise_after_the_listed_ones_unless_rise_is_1_or_less() -> None:
    assert next_rate([2000.0, 5000.0], 1000.0, 1.5) == 2000.0
    assert next_rate([], 5000.0, 1.5) == 7500.0
    assert next_rate([], 5000.0, 1.0) is None  # before: 5,000/s again, for ever
    assert next_rate([], 5000.0, 0.0) is None  # before: 0/s, reported as a backlog ("NO")
