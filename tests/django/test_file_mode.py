"""``OPTIONS["file_mode"]``: a queue file a web server and a worker running as two users of one
group can share, and the check that warns when the queue folder is another user's (issue 14,
item 15)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from litetasks._django import setup_checks
from litetasks._django.compat import InvalidTaskBackend, task_backends
from litetasks._store import doorbell
from tests import tasks
from tests.harness import subprocess_env

LITE = "litetasks.backend.SQLiteBackend"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual umask, which would take the group's write bit
    yield
    os.umask(previous)


@pytest.mark.usefixtures("umask_022")
def test_file_mode_applies_to_the_file_its_wal_and_shm_and_the_doorbell(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    options = {"path": str(path), "file_mode": 0o660}
    with override_settings(TASKS={"default": {"BACKEND": LITE, "OPTIONS": options}}):
        tasks.noop.enqueue()
    bell = tmp_path / "tasks.sqlite3-doorbell.d"

    assert [mode(p) for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))] == [0o660] * 3
    assert (mode(bell), mode(bell / "ring")) == (0o770, 0o660)


@pytest.mark.usefixtures("umask_022")
def test_by_default_the_queue_file_and_doorbell_are_private(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    with override_settings(TASKS={"default": {"BACKEND": LITE, "OPTIONS": {"path": str(path)}}}):
        tasks.noop.enqueue()
    bell = tmp_path / "tasks.sqlite3-doorbell.d"

    assert [mode(p) for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))] == [0o600] * 3
    assert (mode(bell), mode(bell / "ring")) == (0o700, 0o600)


@pytest.mark.parametrize("value", [0o666, 0o700, 0o644, 0o400, "0o660", True])
def test_a_file_mode_beyond_owner_and_group_read_write_is_refused(
    tmp_path: Path, value: Any
) -> None:
    options = {"path": str(tmp_path / "q"), "file_mode": value}
    with override_settings(TASKS={"default": {"BACKEND": LITE, "OPTIONS": options}}):
        backend = task_backends["default"]
        with pytest.raises(InvalidTaskBackend) as refused:
            backend.config  # noqa: B018
        [error] = [m for m in backend.check() if m.id == "litetasks.E005"]
    assert (
        str(refused.value)
        == error.msg
        == (
            "TASKS['default']['OPTIONS']['file_mode'] must be a file mode with read and write for "
            "the owner and at most read and write for the group, such as 0o600 (the default) or "
            f"0o660 (got {value!r})."
        )
    )


def test_a_doorbell_folder_another_user_of_the_group_made_is_accepted_when_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "tasks.sqlite3-doorbell.d"
    folder.mkdir(mode=0o770)
    os.chmod(folder, 0o770)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(folder).st_uid + 1)  # "another user"

    assert "belongs to another user" in (doorbell.doorbell_folder_problem(folder) or "")
    monkeypatch.setitem(doorbell._shared_modes, folder, 0o660)
    assert doorbell.doorbell_folder_problem(folder) is None
    os.chmod(folder, 0o772)
    assert "is writable by other users (mode 0772)" in (
        doorbell.doorbell_folder_problem(folder) or ""
    )


@pytest.mark.parametrize(
    ("file_mode", "hint"),
    [
        (0o600, "Run both as one user, or set TASKS['default']['OPTIONS']['file_mode'] = 0o660"),
        (0o660, "TASKS['default']['OPTIONS']['file_mode'] is 0o660: put both users in the"),
    ],
)
def test_a_queue_folder_of_another_user_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_mode: int, hint: str
) -> None:
    options = {"path": str(tmp_path / "tasks.sqlite3"), "file_mode": file_mode}
    with override_settings(TASKS={"default": {"BACKEND": LITE, "OPTIONS": options}}):
        backend = task_backends["default"]
        assert [m for m in backend.check() if m.id == "litetasks.W004"] == []
        monkeypatch.setattr(setup_checks.os, "geteuid", lambda: tmp_path.stat().st_uid + 1)
        [warning] = [m for m in backend.check() if m.id == "litetasks.W004"]
    assert warning.msg == (
        f"The folder of the queue file {str(tmp_path / 'tasks.sqlite3')!r} belongs to another "
        f"user (uid {tmp_path.stat().st_uid}) than this process (uid "
        f"{tmp_path.stat().st_uid + 1})."
    )
    assert hint in warning.hint


# A root process creates the queue (its folder given to group 4242, setgid, as the README says),
# then forks a child that becomes another user of that group and enqueues too. In a script of
# its own: a fork in the test process, which may have threads, could deadlock.
TWO_USERS = """
import json, logging, os, sys, tempfile
from pathlib import Path

from litetasks._store.config import StoreConfig
from litetasks._store.enqueueing import new_job_id
from litetasks._store.producer import enqueue, thread_store
from litetasks._store.records import NewJob

folder = Path(sys.argv[1])
config = StoreConfig(path=folder / "tasks.sqlite3", file_mode=int(sys.argv[2], 8))
warnings = []
handler = logging.Handler()
handler.emit = lambda record: warnings.append(record.getMessage())
logging.getLogger("litetasks").addHandler(handler)
enqueue(config, [NewJob(job_id=new_job_id(), task_path="tests.tasks.noop")])
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    report = {}
    try:
        os.setgroups([4242])
        os.setgid(4242)
        os.setuid(65534)
        enqueue(config, [NewJob(job_id=new_job_id(), task_path="tests.tasks.noop")])
        report["ready"] = sum(thread_store(config).counts().values())
    except Exception as exc:
        report["error"] = str(exc)
    report["warnings"] = warnings
    os.write(write, json.dumps(report).encode())
    os._exit(0)
os.close(write)
chunks = []
while chunk := os.read(read, 65536):
    chunks.append(chunk)
os.waitpid(pid, 0)
print(json.dumps({"child": json.loads(b"".join(chunks)), "parent_warnings": warnings}))
"""


def files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (stat.S_IMODE(p.stat().st_mode), p.stat().st_gid)
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_two_users_of_one_group_share_a_queue_with_file_mode_0660(tmp_path: Path) -> None:
    results = {}
    for file_mode in ("660", "600"):
        folder = Path(tempfile.mkdtemp(dir="/tmp"))  # tmp_path's parents are root's alone
        try:
            os.chown(folder, -1, 4242)
            os.chmod(folder, 0o2770)
            ran = subprocess.run(
                [sys.executable, "-c", TWO_USERS, str(folder), file_mode],
                env=subprocess_env(),
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            results[file_mode] = json.loads(ran.stdout), files(folder)
        finally:
            shutil.rmtree(folder)

    shared, shared_files = results["660"]
    assert shared == {"child": {"ready": 2, "warnings": []}, "parent_warnings": []}
    assert shared_files == {
        "tasks.sqlite3": (0o660, 4242),
        "tasks.sqlite3-doorbell.d": (0o2770, 4242),
        "tasks.sqlite3-doorbell.d/ring": (0o660, 4242),
    }  # (the -wal and -shm, which the child wrote through, are gone with the last connection)
    private, _ = results["600"]
    assert private["child"]["error"].startswith("Cannot open the queue file ")
