"""``litetasks bench``, run as an operator runs it: a subprocess in a folder with no project."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from litetasks._cli.bench import percentile
from litetasks._store.records import NewJob
from litetasks._store.store import Store
from tests.harness import ProcessGroup, descendants, subprocess_env, wait_for

RATES = (
    "enqueue_per_s",
    "enqueue_noop_per_s",
    "bulk_per_s",
    "drain_1x1_per_s",
    "drain_noop_1x1_per_s",
    "drain_pool_per_s",
)
LATENCIES = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Return an empty working folder and the folder the benchmark must use for its files."""
    cwd, temp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    temp.mkdir()
    return cwd, temp


def bench_env(temp: Path) -> dict[str, str]:
    """No settings module, no project on the path: the benchmark builds its throwaway one."""
    env = subprocess_env(settings=None, pythonpath=())
    env["TMPDIR"] = str(temp)
    return env


def bench_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "litetasks", "bench", *args]


def queue_with_one_job(path: Path) -> None:
    with Store(path) as store:
        store.enqueue([NewJob(job_id="0" * 32, task_path="myapp.tasks.send_invoice")])


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([5.0], 99, 5.0), ([3.0, 1.0, 2.0], 50, 2.0), ([float(i) for i in range(1, 101)], 95, 95.0)],
)
def test_percentile_is_the_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


@pytest.mark.slow
def test_quick_bench_measures_everything_and_leaves_no_process_or_file(
    folders: tuple[Path, Path], procs: ProcessGroup
) -> None:
    cwd, temp = folders
    started = procs.start(
        bench_argv("--quick", "--n", "300", "--json", "out.json"), env=bench_env(temp), cwd=cwd
    )

    assert started.wait(timeout_s=300) == 0, started.output
    report = json.loads((cwd / "out.json").read_text())
    metrics, settings = report["metrics"], report["settings"]
    assert all(metrics[name] > 0 for name in RATES), metrics
    assert 0 < metrics["enqueue_p50_ms"] <= metrics["enqueue_p99_ms"], metrics
    assert 0 < metrics["latency_p50_ms"] <= metrics["latency_p95_ms"] <= metrics["latency_p99_ms"]
    assert metrics["latency_p99_ms"] < 10_000, metrics
    assert 0 <= metrics["idle_cpu_pct"] < 100 * report["machine"]["cores"], metrics
    assert 10 < metrics["peak_rss_mb"] < 2000, metrics
    assert (settings["project"], settings["synchronous"], settings["n"], settings["probes"]) == (
        None,
        "NORMAL",
        300,
        30,
    )
    assert Path(report["machine"]["queue_file"]).parent.parent == temp
    assert "enqueue record(id, str, dict), one call at a time" in started.output
    assert "drain noop tasks, 1 process x 1 thread" in started.output
    assert procs.survivors() == []
    assert list(temp.iterdir()) == []
    assert sorted(p.name for p in cwd.iterdir()) == ["out.json"]


def test_bench_refuses_a_queue_file_that_holds_jobs(folders: tuple[Path, Path]) -> None:
    cwd, temp = folders
    queue_with_one_job(cwd / "tasks.sqlite3")

    done = subprocess.run(
        bench_argv("--path", "tasks.sqlite3"),
        cwd=cwd,
        env=bench_env(temp),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"litetasks: error: The queue file '{cwd / 'tasks.sqlite3'}' is in use (jobs: 1, "
        "workers: 0); litetasks bench only uses a new or empty one. Point --path at a new file "
        "instead.\n"
    )
    with Store(cwd / "tasks.sqlite3") as store:
        assert sum(store.counts().values()) == 1
    assert list(temp.iterdir()) == []


@pytest.mark.slow
def test_bench_on_an_empty_queue_file_leaves_it_empty(
    folders: tuple[Path, Path], procs: ProcessGroup
) -> None:
    cwd, temp = folders
    path = cwd / "tasks.sqlite3"
    Store(path).close()
    args = ("--path", str(path), "--n", "50", "--probes", "5", "--idle-seconds", "0.5")

    started = procs.start(bench_argv(*args), env=bench_env(temp), cwd=cwd)

    assert started.wait(timeout_s=300) == 0, started.output
    assert f"Queue:    {path} on " in started.output
    with Store(path) as store:
        assert store.counts() == {}
        assert store.get_workers() == []
    assert procs.survivors() == []
    assert list(temp.iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_removes_the_files(
    folders: tuple[Path, Path], procs: ProcessGroup
) -> None:
    cwd, temp = folders
    started = procs.start(bench_argv("--n", "20000"), env=bench_env(temp), cwd=cwd)
    wait_for(lambda: descendants(started.pid), timeout_s=120, what="a litetasks run worker")

    started.send(signal.SIGINT)

    assert started.wait(timeout_s=60) == 130, started.output
    assert "Interrupted" in started.output
    assert procs.survivors() == []
    assert list(temp.iterdir()) == []
