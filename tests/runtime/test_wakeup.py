"""The doorbell: rings wake waiters in this process directly and in other processes via inotify."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import (
    DirModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
)

from litetasks._runtime import wakeup
from litetasks._runtime.wakeup import Waiter
from litetasks._store import doorbell
from litetasks._store.doorbell import Doorbell, doorbell_path

REPO = Path(__file__).resolve().parents[2]

# Every test runs with each way rings of other processes reach a waiter (conftest.watcher).
pytestmark = pytest.mark.usefixtures("watcher")


@pytest.fixture
def waiter(queue_path: Path) -> Iterator[Waiter]:
    with Waiter(queue_path) as waiter:
        yield waiter


class _Sleeper:
    """Run ``waiter.wait()`` in a thread and record whether and when it returned."""

    def __init__(self, waiter: Waiter, timeout_s: float = 5.0) -> None:
        self._waiter = waiter
        self._timeout_s = timeout_s
        self._waiting = threading.Event()
        self._result: list[tuple[bool, float]] = []
        self._thread = threading.Thread(target=self._run, name="test-sleeper")
        self._thread.start()
        assert self._waiting.wait(5)

    def _run(self) -> None:
        self._waiting.set()
        rung = self._waiter.wait(self._timeout_s)
        self._result.append((rung, time.monotonic()))

    def join(self) -> tuple[bool, float]:
        self._thread.join(self._timeout_s + 5)
        assert not self._thread.is_alive()
        return self._result[0]


def test_doorbell_path_sits_beside_the_resolved_queue_file(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    expected = (tmp_path / "real" / "tasks.sqlite3-doorbell.d" / "ring").resolve()
    assert doorbell_path(tmp_path / "link" / "tasks.sqlite3") == expected
    assert doorbell_path(tmp_path / "real" / "tasks.sqlite3") == expected


def test_a_ring_in_this_process_wakes_a_waiting_thread_within_50_ms(
    queue_path: Path, waiter: Waiter
) -> None:
    waiter.clear()
    sleeper = _Sleeper(waiter)
    rung_at = time.monotonic()
    Doorbell(queue_path).ring()
    rung, woke_at = sleeper.join()
    assert rung
    assert woke_at - rung_at < 0.05


def test_a_ring_between_clear_and_wait_makes_wait_return_at_once(
    queue_path: Path, waiter: Waiter
) -> None:
    waiter.clear()
    Doorbell(queue_path).ring()
    started = time.monotonic()
    assert waiter.wait(5)
    assert time.monotonic() - started < 0.05


def test_clear_forgets_earlier_rings(waiter: Waiter) -> None:
    # wake() stands for a delivered ring: after Doorbell.ring() the file event can still be on
    # its way through the observer, and it wakes the waiter once more (harmlessly).
    waiter.wake()
    waiter.clear()
    assert not waiter.wait(0.05)


def test_wait_returns_false_at_its_timeout(waiter: Waiter) -> None:
    waiter.clear()
    started = time.monotonic()
    assert not waiter.wait(0.05)
    assert time.monotonic() - started >= 0.05


def test_wake_interrupts_a_wait(waiter: Waiter) -> None:
    waiter.clear()
    sleeper = _Sleeper(waiter)
    waiter.wake()
    rung, _ = sleeper.join()
    assert rung


@pytest.mark.slow
def test_a_ring_in_another_process_wakes_the_waiter(queue_path: Path, waiter: Waiter) -> None:
    assert waiter.is_watching
    waiter.clear()
    code = (
        "import sys, time; from pathlib import Path; "
        "from litetasks._store.doorbell import Doorbell; "
        "bell = Doorbell(Path(sys.argv[1])); rung_at = time.monotonic_ns(); bell.ring(); "
        "print(rung_at)"
    )
    pythonpath = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pythonpath}
    with subprocess.Popen(
        [sys.executable, "-c", code, str(queue_path)], env=env, stdout=subprocess.PIPE, text=True
    ) as child:
        rung = waiter.wait(30)
        woke_at = time.monotonic_ns()
        stdout, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    assert rung
    # A generous bound: the latency target is measured by benchmarks/wakeup_latency.py.
    assert 0 <= woke_at - int(stdout) < 500_000_000


@pytest.mark.parametrize("through_the_file", [False, True], ids=["in-process", "file"])
def test_one_ring_wakes_every_waiter_on_the_path(queue_path: Path, through_the_file: bool) -> None:
    bell = doorbell_path(queue_path)
    bell.parent.mkdir(mode=0o700)
    bell.touch(mode=0o600)
    with Waiter(queue_path) as first, Waiter(queue_path) as second:
        first.clear()
        second.clear()
        if through_the_file:
            os.utime(bell)  # what a ring from another process looks like here
        else:
            Doorbell(queue_path).ring()
        assert first.wait(5)
        assert second.wait(5)


def test_a_ring_does_not_wake_waiters_of_another_queue(tmp_path: Path) -> None:
    with Waiter(tmp_path / "other.sqlite3") as other:
        other.clear()
        Doorbell(tmp_path / "tasks.sqlite3").ring()
        assert not other.wait(0.25)


def test_events_on_other_files_in_the_folder_do_not_wake_the_waiter(
    queue_path: Path, waiter: Waiter
) -> None:
    folder = queue_path.parent
    waiter.clear()
    for name in ("db.sqlite3", "tasks.sqlite3", "tasks.sqlite3-wal", "tasks.sqlite3-doorbell.tmp"):
        path = folder / name
        path.write_bytes(b"x")  # created, opened, modified, closed after writing
        os.utime(path)
        path.read_bytes()
    (folder / "db.sqlite3").rename(folder / "db2.sqlite3")
    (folder / "db2.sqlite3").unlink()
    (folder / "static").mkdir()
    os.utime(folder)
    assert not waiter.wait(0.25)
    doorbell_path(queue_path).touch()  # the watch still works
    assert waiter.wait(5)


@pytest.mark.parametrize(
    ("event_class", "target", "rings"),
    [
        (FileAttribEvent, "doorbell", True),  # os.utime(): IN_ATTRIB
        (FileModifiedEvent, "doorbell", True),  # a write: IN_MODIFY
        (FileClosedEvent, "doorbell", True),  # creation, touch(1): IN_CLOSE_WRITE
        (FileAttribEvent, "doorbell as bytes", True),
        (FileOpenedEvent, "doorbell", False),
        (FileClosedNoWriteEvent, "doorbell", False),
        (FileCreatedEvent, "doorbell", False),
        (FileDeletedEvent, "doorbell", False),
        (FileMovedEvent, "doorbell", False),
        (FileAttribEvent, "doorbell.tmp", False),
        (FileModifiedEvent, "wal", False),
        (FileModifiedEvent, "db", False),
        (DirModifiedEvent, "folder", False),
    ],
)
def test_the_handler_rings_only_for_changes_to_the_doorbell_file(
    queue_path: Path, event_class: type[FileSystemEvent], target: str, rings: bool
) -> None:
    bell = doorbell_path(queue_path)
    paths: dict[str, str | bytes] = {
        "doorbell": str(bell),
        "doorbell as bytes": os.fsencode(bell),
        "doorbell.tmp": f"{bell}.tmp",
        "wal": str(bell.with_name("tasks.sqlite3-wal")),
        "db": str(bell.with_name("db.sqlite3")),
        "folder": str(bell.parent),
    }
    rung = wakeup.Bell()
    wakeup._DoorbellHandler(bell, rung).dispatch(event_class(paths[target]))
    assert rung.wait(0) is rings


def test_the_doorbell_file_is_created_with_mode_0600(queue_path: Path) -> None:
    Doorbell(queue_path).ring()
    assert doorbell_path(queue_path).stat().st_mode & 0o777 == 0o600


def test_the_doorbell_folder_is_created_private(queue_path: Path) -> None:
    Doorbell(queue_path).ring()
    assert doorbell_path(queue_path).parent.stat().st_mode & 0o777 == 0o700


def _symlinked(folder: Path, elsewhere: Path) -> None:
    folder.symlink_to(elsewhere)


def _open_to_all(folder: Path, elsewhere: Path) -> None:
    folder.mkdir()
    folder.chmod(0o777)


def _foreign(folder: Path, elsewhere: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a folder to another user")
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)  # nobody


@pytest.mark.parametrize(
    ("plant", "said"),
    [
        (_symlinked, "is a symlink"),
        (_open_to_all, "is writable by other users"),
        (_foreign, "belongs to another user (uid 65534)"),
    ],
)
def test_a_doorbell_folder_planted_by_someone_else_is_never_used(
    queue_path: Path, caplog: pytest.LogCaptureFixture, plant: Any, said: str
) -> None:
    elsewhere = queue_path.parent / "elsewhere"
    elsewhere.mkdir()
    folder = doorbell_path(queue_path).parent
    plant(folder, elsewhere)
    before = set(threading.enumerate())
    with caplog.at_level(logging.WARNING, logger="litetasks._runtime.wakeup"):
        with Waiter(queue_path) as waiter:
            assert not waiter.is_watching
            Doorbell(queue_path).ring()
            assert waiter.wait(5)  # rings from this process still arrive
        assert not set(threading.enumerate()) - before
    assert list(elsewhere.iterdir()) == []
    assert not os.path.lexists(folder / "ring")
    messages = [r.getMessage() for r in caplog.records]
    assert messages and all(said in message for message in messages), messages


def test_ring_never_raises_and_warns_once_when_the_file_cannot_be_touched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bell = Doorbell(tmp_path / "missing" / "tasks.sqlite3")
    with caplog.at_level(logging.WARNING, logger="litetasks._runtime.wakeup"):
        bell.ring()
        bell.ring()
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        f"Could not ring the doorbell path={bell.path} error="
        f"[Errno 2] No such file or directory: {str(bell.path.parent)!r}"  # its folder
    ]


def test_stop_is_idempotent_and_joins_the_observer_threads(queue_path: Path, watcher: str) -> None:
    before = set(threading.enumerate())
    waiter = Waiter(queue_path)
    waiter.start()
    waiter.start()
    assert waiter.is_watching
    if watcher == "watchdog":
        assert set(threading.enumerate()) - before  # the observer's threads
    else:
        assert not set(threading.enumerate()) - before  # the waiting thread reads inotify
        descriptor = waiter._inotify.fileno() if waiter._inotify is not None else -1
        assert os.readlink(f"/proc/self/fd/{descriptor}") == "anon_inode:inotify"
    waiter.stop()
    waiter.stop()
    assert not waiter.is_watching
    assert not set(threading.enumerate()) - before
    if watcher == "inotify":
        assert not os.path.lexists(f"/proc/self/fd/{descriptor}") or (
            os.readlink(f"/proc/self/fd/{descriptor}") != "anon_inode:inotify"
        )
    waiter.clear()
    Doorbell(queue_path).ring()
    assert not waiter.wait(0.05)  # a stopped Waiter no longer hears rings


def test_a_missing_folder_falls_back_to_in_process_rings_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue_path = tmp_path / "missing" / "tasks.sqlite3"
    before = set(threading.enumerate())
    with caplog.at_level(logging.WARNING, logger="litetasks._runtime.wakeup"):
        with Waiter(queue_path) as first, Waiter(queue_path) as second:
            assert not first.is_watching
            assert not second.is_watching
            assert not set(threading.enumerate()) - before
            first.clear()
            assert not first.wait(0.01)
            Doorbell(queue_path).ring()
            assert first.wait(5)
            assert second.wait(5)
            first.clear()
            assert not first.wait(0.01)  # with no file events, clear() forgets the ring
        assert not set(threading.enumerate()) - before
    watch_warnings = [r for r in caplog.records if r.getMessage().startswith("Cannot watch")]
    assert len(watch_warnings) == 1


def _ring_in_forked_child(waiter: Waiter, queue_path: Path) -> None:
    # The parent's waiter is not registered here, and stopping it must not touch its observer,
    # whose threads do not exist in this process.
    assert doorbell._registry == {}
    waiter.stop()
    Doorbell(queue_path).ring()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_with_no_waiters_and_its_ring_reaches_the_parent(
    queue_path: Path, waiter: Waiter
) -> None:
    waiter.clear()
    child = multiprocessing.get_context("fork").Process(
        target=_ring_in_forked_child, args=(waiter, queue_path)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert waiter.is_watching
    assert waiter.wait(5)


def test_past_the_inotify_instance_limit_a_waiter_falls_back_to_in_process_rings(
    queue_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_more_instances(*args: object) -> None:
        raise OSError(errno.EMFILE, "inotify instance limit reached")

    monkeypatch.setattr(wakeup, "Observer", no_more_instances)
    monkeypatch.setattr(wakeup, "InotifyWatch", no_more_instances)
    with (
        caplog.at_level(logging.WARNING, logger="litetasks._runtime.wakeup"),
        Waiter(queue_path) as waiter,
    ):
        assert not waiter.is_watching
        waiter.clear()
        Doorbell(queue_path).ring()
        assert waiter.wait(5)
    assert "inotify instance limit reached" in caplog.text


_WAKE_FROM_SIGNALS = """
import os, signal, sys, threading, time
from pathlib import Path
from litetasks._runtime.wakeup import Waiter

waiter = Waiter(Path(sys.argv[1]))
waiter.start()
handled = 0

def on_signal(signum, frame):
    global handled
    handled += 1
    waiter.wake()

signal.signal(signal.SIGUSR1, on_signal)
until = time.monotonic() + 1.5

def kick():
    while time.monotonic() < until:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.0001)

kicker = threading.Thread(target=kick)
kicker.start()
while time.monotonic() < until:
    waiter.clear()
    waiter.wait(0)  # never blocks: the thread spends its time around the waiter's state
kicker.join()
waiter.stop()
print(handled)
"""


@pytest.mark.slow
def test_wake_from_a_signal_handler_never_deadlocks_the_thread_it_interrupts(queue_path: Path):
    # Workers stop on SIGTERM by calling wake() in the handler, which runs on the dispatcher's
    # thread: often while that thread is inside wait() or clear(). A lock taken there (as
    # threading.Event takes one) would be taken twice by one thread, and the worker would hang.
    done = subprocess.run(
        [sys.executable, "-c", _WAKE_FROM_SIGNALS, str(queue_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 100  # signals landed throughout the waits


def test_commits_beside_the_doorbell_reach_no_watcher_thread(
    queue_path: Path, file_events: list[str]
) -> None:
    # Every commit writes the queue file's -wal and -shm. Were they in the watched folder,
    # watchdog's threads would wake for each write (to drop the event), taking the GIL from a
    # draining worker thousands of times a second.
    seen = file_events
    with Waiter(queue_path) as waiter:
        for suffix in ("", "-wal", "-shm"):
            with open(f"{queue_path}{suffix}", "ab") as handle:
                for _ in range(20):
                    handle.write(b"x")
                    handle.flush()
        waiter.clear()
        Doorbell(queue_path).ring()  # events are in order: once this one arrives, all have
        os.utime(doorbell_path(queue_path))
        deadline = time.monotonic() + 5
        while not any(path.endswith("ring") for path in seen):
            assert time.monotonic() < deadline, "the ring never reached the watcher"
            waiter.wait(0.01)  # where inotify is read by the waiting thread, it reads here
    assert {Path(path).name for path in seen} == {"ring"}
