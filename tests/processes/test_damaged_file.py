"""The queue file damaged under a running ``litetasks run``: a clear error, then a clean exit
or recovery; never a hang, a silent loss or a traceback per retry.

- deleted, truncated, overwritten: the supervisor notices within about a second, stops the pool
  (running tasks get their grace period) and exits 1 with one line saying what happened and
  what to do; of a deleted file it saves what it still sees as ``<name>.saved-<time>``.
- full (``PRAGMA max_page_count`` lowered on the worker's connection by the ``full`` fault):
  the pool logs that the disk is full, backs off, and records everything once space is freed;
  SIGTERM while it is still full exits within the grace period (code 1), and the tasks whose
  outcomes could not be recorded are recovered as lost, never as done.
- read-only: processes that have the file open keep working (Unix checks permissions at open);
  a worker process starting meanwhile logs one line and is retried with back-off until the
  permission is back; ``litetasks run`` on a read-only file exits 2 with one line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from litetasks._store.enqueueing import new_job_id
from litetasks._store.records import JobState, NewJob
from litetasks._store.store import Store
from tests import tasks
from tests.harness import (
    QUICK_STOP,
    REPO,
    WORKER_LOST,
    Pool,
    Started,
    litetasks_argv,
    start_run,
    stop,
    subprocess_env,
    wait_for,
)

pytestmark = pytest.mark.slow


def later_job(pool: Pool) -> str:
    """Enqueue a task due in an hour: it is READY in the file for the whole test."""
    job = NewJob(
        job_id=new_job_id(),
        task_path=tasks.noop.module_path,
        run_after_us=pool.store.now_us() + 3600 * 1_000_000,
    )
    pool.store.enqueue([job])
    return job.job_id


def delete(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink()


def truncate(path: Path) -> None:
    os.truncate(path, 0)


def overwrite(path: Path) -> None:
    with open(path, "r+b") as file:
        file.write(os.urandom(4096))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        # A thread of the pool that opens its first connection after the delete creates a
        # new, empty file at the path (as a producer would): then the file "was replaced".
        (delete, ("was deleted", "was replaced by another file")),
        (truncate, "was truncated to 0 bytes"),
        (overwrite, "was overwritten: it is not a SQLite database any more"),
    ],
)
def test_a_deleted_truncated_or_overwritten_file_stops_the_pool_with_one_clear_line(
    open_pool: Callable[..., Pool], damage: Callable[[Path], None], said: str | tuple[str, ...]
) -> None:
    pool = open_pool(**QUICK_STOP)
    first = pool.enqueue("first")
    waiting = later_job(pool)
    supervisor = start_run(pool)
    pool.wait_state(first, JobState.SUCCESSFUL)
    path = pool.store.path

    damaged = time.monotonic()
    damage(path)
    code = supervisor.wait(timeout_s=20)
    elapsed = time.monotonic() - damaged

    assert code == 1, supervisor.output
    [line] = [line for line in supervisor.output.splitlines() if "litetasks stopped" in line]
    assert any(words in line for words in ([said] if isinstance(said, str) else said)), line
    assert "start litetasks again" in line.lower(), line
    assert "Traceback" not in supervisor.output, supervisor.output
    assert pool.procs.survivors() == []
    print(f"\n[damage] {damage.__name__}: stopped after {elapsed:.1f} s")
    if damage is delete:  # what the pool still saw is saved, with the waiting task READY
        saved = line.split(" tasks it held as '")[1].split("'", maxsplit=1)[0]
        assert f"run `litetasks merge {saved}`" in line, line
        with Store(saved) as copy:
            assert copy.get(waiting).state == JobState.READY
            assert copy.get(first).state == JobState.SUCCESSFUL
            assert copy.integrity_check() == "ok"
        assert os.stat(saved).st_mode & 0o777 == 0o600


def fill(pool: Pool, count: int) -> None:
    """Add ``count`` rows of 8 KB in a queue the pool does not serve."""
    jobs = [
        NewJob(
            job_id=new_job_id(),
            task_path=tasks.noop.module_path,
            queue_name="reports",
            args_json=json.dumps(["x" * 8000]),
        )
        for _ in range(count)
    ]
    pool.store.enqueue(jobs)


def free(pool: Pool) -> None:
    """Delete the filler rows: their pages become free for the pool's connection to reuse."""
    with Store(pool.store.path) as store:
        store.cancel([])  # opened and migrated
    connection = apsw.Connection(str(pool.store.path))
    connection.set_busy_timeout(5000)
    connection.execute("DELETE FROM jobs WHERE queue_name = 'reports'")
    connection.close()


def start_full(pool: Pool, tmp_path: Path) -> Started:
    once = tmp_path / "fired"
    once.mkdir()
    env = subprocess_env(pool.root, settings="pool_settings", pythonpath=(REPO, pool.root))
    env.update(LITETASKS_FAULTS="claim.before_begin=full", LITETASKS_FAULTS_ONCE=str(once))
    supervisor = start_run(pool, "--queue", "default", env=env)
    wait_for((once / "claim.before_begin").exists, timeout_s=20, what="the disk to be full")
    return supervisor


def enqueue_growing(pool: Pool, tmp_path: Path, count: int) -> dict[str, Path]:
    """Tasks whose 20 KB return values need new pages; each writes one line to its side file."""
    sides = {}
    for index in range(count):
        side = tmp_path / f"grew-{index}.txt"
        sides[tasks.grow.enqueue(str(side), 20_000).id] = side
    return sides


def runs(side: Path) -> int:
    return len(side.read_text().splitlines()) if side.exists() else 0


def test_a_full_disk_holds_outcomes_until_space_is_freed_then_records_them(
    open_pool: Callable[..., Pool], tmp_path: Path
) -> None:
    pool = open_pool(**QUICK_STOP)
    fill(pool, 40)
    supervisor = start_full(pool, tmp_path)
    sides = enqueue_growing(pool, tmp_path, 3)
    supervisor.wait_for_line("is full", timeout_s=20)
    time.sleep(3)  # let the pool retry a few times while full: it must not log every try

    ran = [job_id for job_id, side in sides.items() if runs(side)]
    assert ran and all(pool.job(job_id).state == JobState.RUNNING for job_id in ran)
    assert all(runs(side) <= 1 for side in sides.values())
    assert supervisor.output.count("is full") <= 2, supervisor.output
    free(pool)
    for job_id in sides:
        wait_for(
            lambda j=job_id: pool.job(j).state == JobState.SUCCESSFUL,  # type: ignore[misc]
            timeout_s=20,
            what="the outcomes to be recorded",
        )
    supervisor.wait_for_line("works again", timeout_s=10)
    assert stop(supervisor) == 0, supervisor.output
    assert all(runs(side) == 1 for side in sides.values())
    assert "Traceback" not in supervisor.output, supervisor.output
    assert pool.store.integrity_check() == "ok"


def test_sigterm_while_the_disk_is_full_exits_within_the_grace_period_and_loses_nothing(
    open_pool: Callable[..., Pool], tmp_path: Path
) -> None:
    pool = open_pool(**QUICK_STOP)
    fill(pool, 40)
    supervisor = start_full(pool, tmp_path)
    sides = enqueue_growing(pool, tmp_path, 2)
    supervisor.wait_for_line("is full", timeout_s=20)

    signalled = time.monotonic()
    code = stop(supervisor, timeout_s=QUICK_STOP["grace_s"] + 8)
    elapsed = time.monotonic() - signalled

    assert code == 1, supervisor.output
    ran = {job_id for job_id, side in sides.items() if runs(side)}
    assert f"could not record the outcome of {len(ran)} task(s)" in supervisor.output
    assert "Traceback" not in supervisor.output, supervisor.output
    print(f"\n[damage] SIGTERM while full: exited after {elapsed:.1f} s")
    free(pool)
    burst = subprocess.run(
        litetasks_argv("run", "--burst", "--processes", "1"),
        cwd=pool.root,
        env=subprocess_env(pool.root, settings="pool_settings", pythonpath=(REPO, pool.root)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert burst.returncode == 0, burst.stderr
    assert ran
    for job_id, side in sides.items():
        job = pool.job(job_id)
        assert runs(side) == 1, job
        if job_id in ran:  # its outcome was lost with the file: lost, never marked done
            assert job.state == JobState.FAILED, job
            assert [e.exception_class_path for e in job.errors] == [WORKER_LOST]
        else:
            assert (job.state, job.attempts) == (JobState.SUCCESSFUL, 1), job
    assert pool.store.integrity_check() == "ok"


# -- read-only ---------------------------------------------------------------------------------

# Root ignores file permissions; without these capabilities it is bound by them as the owner.
_DAC_CAPABILITIES = "-dac_override,-dac_read_search,-fowner"


def unprivileged(argv: list[str]) -> list[str]:
    if os.getuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root: setpriv (util-linux) is needed to drop privileges"
    return [setpriv, f"--bounding-set={_DAC_CAPABILITIES}", *argv]


def test_a_read_only_file_stops_new_workers_with_one_line_until_it_is_writable_again(
    open_pool: Callable[..., Pool],
) -> None:
    pool = open_pool(**QUICK_STOP)
    env = subprocess_env(pool.root, settings="pool_settings", pythonpath=(REPO, pool.root))
    first = pool.enqueue("first")
    argv = unprivileged(litetasks_argv("run", "--processes", "1", "--threads", "1"))
    supervisor = pool.procs.start(argv, env=env, cwd=pool.root)
    pool.wait_state(first, JobState.SUCCESSFUL)
    path = pool.store.path

    path.chmod(0o400)
    pool.root.chmod(0o500)
    try:
        # The running worker still writes: it has the file open. (add() writes no side file
        # into the now read-only folder.)
        second = tasks.add.enqueue(2, 2).id
        wait_for(lambda: pool.job(second).state.is_finished, timeout_s=15, what="second")
        refused = subprocess.run(
            unprivileged(litetasks_argv("run", "--burst")),
            cwd=pool.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        [worker] = [w.pid for w in pool.store.get_workers()]
        os.kill(worker, signal.SIGKILL)  # its replacement has to open the file
        supervisor.wait_for_line("is read-only for this user", timeout_s=20)
        third = tasks.add.enqueue(3, 3).id
    finally:
        path.chmod(0o600)
        pool.root.chmod(0o700)
    # The next restart of the worker works.
    wait_for(lambda: pool.job(third).state.is_finished, timeout_s=30, what="third")
    assert stop(supervisor) == 0, supervisor.output

    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "is read-only for this user" in refused.stderr
    assert "Traceback" not in supervisor.output, supervisor.output
    assert [line for line in supervisor.output.splitlines() if "cannot start" in line]
    assert [pool.job(j).return_json for j in (second, third)] == ["4", "6"]
    assert pool.job(first).state == JobState.SUCCESSFUL
    assert pool.store.integrity_check() == "ok"
