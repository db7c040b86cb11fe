"""The inotify watch a waiting thread reads itself (Linux): what it hears, and a doorbell
folder removed under a waiter (a temp-file cleaner) and made anew."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import threading
import time
from pathlib import Path

import pytest

from litetasks._runtime import inotify
from litetasks._runtime.inotify import InotifyWatch, parse_events
from litetasks._runtime.wakeup import Waiter
from litetasks._store.doorbell import Doorbell, doorbell_path, unlisten

pytestmark = pytest.mark.skipif(
    not inotify.is_available(), reason="Linux only: elsewhere waiters use watchdog"
)


def _event(mask: int, name: bytes, padded_to: int = 16) -> bytes:
    length = -(-(len(name) + 1) // padded_to) * padded_to if name else 0
    return struct.pack("iIII", 1, mask, 0, length) + name.ljust(length, b"\0")


def test_parse_events_reads_each_event_and_its_name_without_padding() -> None:
    data = (
        _event(inotify.IN_ATTRIB, b"ring")
        + _event(inotify.IN_Q_OVERFLOW, b"")
        + _event(inotify.IN_CLOSE_WRITE, b"a-much-longer-name", padded_to=32)
    )
    assert parse_events(data) == [
        (inotify.IN_ATTRIB, b"ring"),
        (inotify.IN_Q_OVERFLOW, b""),
        (inotify.IN_CLOSE_WRITE, b"a-much-longer-name"),
    ]


def test_a_watch_hears_changes_to_its_file_only(tmp_path: Path) -> None:
    (tmp_path / "ring").touch()
    (tmp_path / "other").touch()
    watch = InotifyWatch(tmp_path, "ring")
    try:
        assert not watch.read()  # nothing yet
        os.utime(tmp_path / "other")
        (tmp_path / "other").write_bytes(b"x")
        (tmp_path / "ring").read_bytes()  # opened and closed without writing: no change
        assert not watch.read()
        os.utime(tmp_path / "ring")
        assert watch.read()
        assert not watch.read()  # read() took the event
        with (tmp_path / "ring").open("ab") as handle:
            handle.write(b"x")
        assert watch.read()
        assert not watch.gone
    finally:
        watch.close()
        watch.close()


def test_a_removed_folder_ends_the_watch_and_is_heard_as_a_change(tmp_path: Path) -> None:
    folder = tmp_path / "bell.d"
    folder.mkdir()
    watch = InotifyWatch(folder, "ring")
    try:
        shutil.rmtree(folder)
        assert watch.read()  # look once: rings may have been missed
        assert watch.gone
    finally:
        watch.close()


def test_a_missing_folder_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(OSError) as raised:
        InotifyWatch(tmp_path / "missing", "ring")
    assert raised.value.errno == errno.ENOENT
    assert str(tmp_path / "missing") in str(raised.value)


def test_a_waiter_reads_rings_of_other_processes_on_its_own_thread(queue_path: Path) -> None:
    before = set(threading.enumerate())
    with Waiter(queue_path) as waiter:
        unlisten(waiter.path, waiter)  # only the file's events reach it, as in another process
        assert waiter.is_watching
        assert set(threading.enumerate()) == before
        waiter.clear()
        os.utime(doorbell_path(queue_path))  # a ring of another process
        assert waiter.wait(5)
        assert waiter.wait(0)  # heard until the next clear()
        waiter.clear()
        assert not waiter.wait(0.05)


def test_a_waiter_watches_its_doorbell_folder_again_after_it_was_removed(
    queue_path: Path,
) -> None:
    bell = Doorbell(queue_path)
    with Waiter(queue_path) as waiter:
        unlisten(waiter.path, waiter)  # only the file's events reach it, as in another process
        waiter.clear()
        old_folder = os.stat(doorbell_path(queue_path).parent).st_ino
        # Its listening byte keeps the old ring file mapped, so the kernel sends the watch no
        # event for the removal: the waiter finds out by looking at the path.
        shutil.rmtree(doorbell_path(queue_path).parent)
        started = time.monotonic()
        while True:  # the worker's loop: look for work (clear), the commits ring, sleep
            waiter.clear()
            bell.ring()
            if waiter.wait(0.05):
                break
            assert time.monotonic() - started < 5, "no ring reached the waiter after the removal"
        assert waiter.is_watching
        assert os.stat(doorbell_path(queue_path).parent).st_ino != old_folder
        assert time.monotonic() - started < 2.5  # checked about once a second


def test_stopping_a_waiter_while_another_thread_waits_does_not_make_that_wait_spin(
    queue_path: Path,
) -> None:
    waiter = Waiter(queue_path)
    waiter.start()
    unlisten(waiter.path, waiter)
    waiter.clear()
    result: list[float] = []

    def wait() -> None:
        started = time.thread_time()
        waiter.wait(1.0)
        result.append(time.thread_time() - started)

    sleeper = threading.Thread(target=wait)
    sleeper.start()
    time.sleep(0.1)
    waiter.stop()  # closes the inotify descriptor the sleeper polls
    os.utime(doorbell_path(queue_path))  # its poll, still on the old descriptor, returns
    sleeper.join(5)
    assert not sleeper.is_alive()
    assert result[0] < 0.2  # it did not poll the closed descriptor over and over
