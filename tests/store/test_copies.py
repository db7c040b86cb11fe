"""``litetasks backup`` and ``litetasks merge``: a consistent copy of a live queue, and adding a
saved copy's tasks back into the queue file without changing a task it has."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from litetasks._django.backend import SQLiteBackend
from litetasks._store.copies import merge
from litetasks._store.enqueueing import new_job_id
from litetasks._store.records import JobState, NewJob
from litetasks._store.store import Store
from litetasks.exceptions import JobNotFound
from litetasks.testing import drain
from tests import tasks
from tests.harness import (
    QUICK_STOP,
    REPO,
    Pool,
    Producers,
    invoke,
    manage,
    run_cli,
    start_run,
    stop,
    subprocess_env,
    write_project,
)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def enqueue_a_mix() -> dict[str, str]:
    """Two READY tasks, one SUCCESSFUL, one FAILED; return their ids by what they are."""
    done = tasks.add.enqueue(1, 2)
    failed = tasks.fail_value_error.enqueue()
    assert drain() == 2
    return {
        "done": done.id,
        "failed": failed.id,
        "ready": tasks.add.enqueue(3, 4).id,
        "later": tasks.noop.enqueue().id,
    }


# -- backup ------------------------------------------------------------------------------------


def test_backup_copies_the_queue_to_a_new_private_file_and_says_what_it_copied(
    runner: CliRunner, backend: SQLiteBackend, tmp_path: Path
) -> None:
    made = enqueue_a_mix()
    dest = tmp_path / "backups" / "tasks.backup"
    dest.parent.mkdir()
    old = os.umask(0)
    try:
        result = invoke(runner, "backup", str(dest))
    finally:
        os.umask(old)

    assert result.exit_code == 0, result.output
    pattern = (
        r"Copied 4 tasks \(READY 2, FAILED 1, SUCCESSFUL 1\) from '(.+)' to '(.+)' "
        r"\(\d+\.\d MB\) in \d+\.\d\d s\.\n"
    )
    match = re.fullmatch(pattern, result.stdout)
    assert match, result.stdout
    assert match.groups() == (str(backend.config.store.path), str(dest))
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert sorted(os.listdir(dest.parent)) == ["tasks.backup"]  # no -wal or -journal left
    with Store(dest) as copy:
        assert copy.integrity_check() == "ok"
        assert {k: copy.get(v).state for k, v in made.items()} == {
            "done": JobState.SUCCESSFUL,
            "failed": JobState.FAILED,
            "ready": JobState.READY,
            "later": JobState.READY,
        }


def test_backup_never_overwrites_a_file_unless_forced(
    runner: CliRunner, backend: SQLiteBackend, tmp_path: Path
) -> None:
    tasks.noop.enqueue()
    dest = tmp_path / "existing"
    dest.write_text("keep me")

    refused = invoke(runner, "backup", str(dest))
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"litetasks: error: {str(dest)!r} exists; litetasks backup never overwrites a file. "
        "Pass --force to replace it, or choose a new name.\n"
    )
    assert dest.read_text() == "keep me"

    forced = invoke(runner, "backup", "--force", str(dest))
    assert forced.exit_code == 0, forced.output
    assert forced.stdout.startswith("Copied 1 task (READY 1) from ")
    with Store(dest) as copy:
        assert sum(copy.counts().values()) == 1


def test_backup_refuses_a_folder_and_the_queue_file_itself(
    runner: CliRunner, backend: SQLiteBackend, tmp_path: Path
) -> None:
    tasks.noop.enqueue()
    folder = invoke(runner, "backup", str(tmp_path))
    assert folder.exit_code == 2
    assert "is a folder: give the path of the backup file to create" in folder.stderr
    itself = invoke(runner, "backup", "--force", str(backend.config.store.path))
    assert itself.exit_code == 2
    assert "is the queue file itself" in itself.stderr
    assert backend.store.counts() == {("default", JobState.READY): 1}  # untouched


def test_manage_py_litetasks_backup_writes_the_copy(tmp_path: Path) -> None:
    queue_file = write_project(tmp_path)
    with Store(queue_file) as store:
        store.enqueue([NewJob(job_id=new_job_id(), task_path="proj.tasks.noop")])
    done = manage(tmp_path, "backup", "copy.sqlite3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Copied 1 task (READY 1) from {str(queue_file)!r} to ")
    with Store(tmp_path / "copy.sqlite3") as copy:
        assert copy.integrity_check() == "ok"


# -- merge -------------------------------------------------------------------------------------


def test_merge_adds_only_the_jobs_the_queue_file_lacks_and_changes_none(
    runner: CliRunner, backend: SQLiteBackend, tmp_path: Path
) -> None:
    made = enqueue_a_mix()
    saved = tmp_path / "saved.sqlite3"
    assert invoke(runner, "backup", str(saved)).exit_code == 0
    with Store(saved) as copy:  # tasks only the copy holds, as after a move
        only_in_copy = [new_job_id() for _ in range(3)]
        copy.enqueue([NewJob(job_id=i, task_path="tests.tasks.noop") for i in only_in_copy])
    assert drain() == 2  # the queue file runs its READY tasks: the copy still has them READY

    result = invoke(runner, "merge", str(saved))

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Added 3 tasks (READY 3) of the 7 in {str(saved)!r} to "
        f"{str(backend.config.store.path)!r}; 4 were there already.\n"
    )
    for job_id in only_in_copy:
        assert backend.store.get(job_id).state == JobState.READY
    for key in ("ready", "later"):  # never changed back to the copy's READY
        assert backend.store.get(made[key]).state == JobState.SUCCESSFUL
    assert drain() == 3
    again = invoke(runner, "merge", str(saved))
    assert again.stdout.startswith(f"Added no tasks of the 7 in {str(saved)!r}")


def test_merge_skips_a_unique_task_whose_twin_is_queued(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    saved = tmp_path / "saved.sqlite3"
    twin = NewJob(job_id=new_job_id(), task_path="tests.tasks.noop", unique_key="k")
    with Store(saved) as copy:
        copy.enqueue([twin])
    backend.store.enqueue(
        [NewJob(job_id=new_job_id(), task_path="tests.tasks.noop", unique_key="k")]
    )

    merged = merge(backend.config.store.path, saved)

    assert (merged.saved_jobs, merged.added, merged.twins) == (1, {}, [twin.job_id])


def test_merge_keeps_the_later_slot_of_a_periodic_schedule(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    saved = tmp_path / "saved.sqlite3"
    job = NewJob(job_id=new_job_id(), task_path="tests.tasks.noop")
    with Store(saved) as copy:
        assert copy.enqueue_slot("digest", 2_000, job) is not None
        assert (
            copy.enqueue_slot("hourly", 1_000, NewJob(job_id=new_job_id(), task_path="x.y"))
            is not None
        )
    slot = NewJob(job_id=new_job_id(), task_path="x.y")
    assert backend.store.enqueue_slot("hourly", 5_000, slot) is not None

    merge(backend.config.store.path, saved)

    schedules = backend.store.schedules()
    assert schedules["digest"] == (2_000, job.job_id)  # the copy's slot: not enqueued again
    assert schedules["hourly"][0] == 5_000  # the queue file's later slot stays


def test_merge_refuses_the_queue_file_itself_and_a_missing_copy(
    runner: CliRunner, backend: SQLiteBackend, tmp_path: Path
) -> None:
    tasks.noop.enqueue()
    itself = invoke(runner, "merge", str(backend.config.store.path))
    assert itself.exit_code == 2
    assert "is the queue file itself" in itself.stderr
    missing = invoke(runner, "merge", str(tmp_path / "nope.sqlite3"))
    assert missing.exit_code == 2
    assert "There is no saved copy at" in missing.stderr


@pytest.mark.slow
def test_a_backup_taken_while_producers_and_a_pool_run_holds_every_task_acknowledged_before_it(
    open_pool: Callable[..., Pool], tmp_path: Path
) -> None:
    pool = open_pool(**QUICK_STOP)
    supervisor = start_run(pool)
    supervisor.wait_for_line("Starting supervisor", timeout_s=30)
    producers = Producers(pool, 2)
    producers.wait_for(500)
    before = producers.acknowledged()  # every enqueue() that returned before the backup began
    dest = tmp_path / "backup.sqlite3"

    env = subprocess_env(pool.root, settings="pool_settings", pythonpath=(REPO, pool.root))
    done = run_cli("backup", str(dest), cwd=pool.root, env=env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Copied "), done.stdout
    producers.wait_for(len(before) + 300)  # neither producers nor the pool were held off
    producers.finish()
    assert stop(supervisor) == 0, supervisor.output
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    with Store(dest) as copy:
        assert copy.integrity_check() == "ok"
        missing = []
        for job_id in before:
            try:
                copy.get(job_id)
            except JobNotFound:
                missing.append(job_id)
        in_copy = sum(copy.counts().values())
    print(
        f"\n[backup] {done.stdout.strip()} ({len(before)} acknowledged before it, {in_copy} in it)"
    )
    assert missing == []
