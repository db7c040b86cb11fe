"""A process that enqueues into many queue files, or from many threads, keeps few of them open.

Each thread keeps its connection (three descriptors: the file, its -wal and -shm) to the last
few queue files it used, so a thread that meets a new queue file again and again (a project's
tests with a queue file per test, a queue file per tenant) does not run out of descriptors; a
thread that ends closes its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.test import override_settings

from litetasks._django.compat import task_backends
from litetasks._store.producer import _STORES_PER_THREAD
from litetasks._store.records import JobState
from litetasks.testing import drain
from tests import tasks

LITE = "litetasks.backend.SQLiteBackend"


@contextmanager
def queue_file(path: Path) -> Iterator[None]:
    options = {"path": str(path)}
    with override_settings(TASKS={"default": {"BACKEND": LITE, "OPTIONS": options}}):
        yield


def open_queue_files(folder: Path) -> set[str]:
    """The queue files under ``folder`` that this process has a descriptor on (any of three)."""
    opened = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed since
            continue
        if target.startswith(f"{folder}{os.sep}"):
            opened.add(target.removesuffix("-wal").removesuffix("-shm"))
    return opened


def test_enqueueing_into_a_hundred_queue_files_in_turn_keeps_only_the_last_few_open(
    tmp_path: Path,
) -> None:
    for number in range(100):
        with queue_file(tmp_path / f"{number}.sqlite3"):
            tasks.noop.enqueue()

    opened = open_queue_files(tmp_path)
    assert len(opened) <= _STORES_PER_THREAD, sorted(opened)
    assert str(tmp_path / "99.sqlite3") in opened  # the last one stays open for the next enqueue


def test_a_store_kept_by_its_caller_stays_usable_after_its_thread_used_many_others(
    tmp_path: Path,
) -> None:
    with queue_file(tmp_path / "kept.sqlite3"):
        store = task_backends["default"].store
        result = tasks.noop.enqueue()
    for number in range(2 * _STORES_PER_THREAD):
        with queue_file(tmp_path / f"{number}.sqlite3"):
            tasks.noop.enqueue()

    assert store.get(result.id).state is JobState.READY
    assert str(tmp_path / "kept.sqlite3") in open_queue_files(tmp_path)
    del store
    assert str(tmp_path / "kept.sqlite3") not in open_queue_files(tmp_path)


def test_a_hundred_short_lived_threads_enqueueing_leave_no_connection_open(tmp_path: Path) -> None:
    with queue_file(tmp_path / "tasks.sqlite3"):
        errors: list[BaseException] = []

        def enqueue() -> None:
            try:
                tasks.noop.enqueue()
            except BaseException as exc:  # shown by the assertion below
                errors.append(exc)

        for _ in range(100):
            thread = threading.Thread(target=enqueue)
            thread.start()
            thread.join()

        assert errors == []
        assert open_queue_files(tmp_path) == set()


def test_drain_leaves_no_thread_and_no_connection_of_its_own_behind(tmp_path: Path) -> None:
    threads = threading.active_count()
    for number in range(20):
        with queue_file(tmp_path / f"{number}.sqlite3"):
            tasks.noop.enqueue()
            assert drain() == 1

    assert threading.active_count() == threads
    assert len(open_queue_files(tmp_path)) <= _STORES_PER_THREAD
