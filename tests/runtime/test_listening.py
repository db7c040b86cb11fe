"""Rings touch the doorbell file only when a waiter looked for work since the last touch, and a
waiter that looked always wakes (issue 17).

The waiters here stop listening in this process (``unlisten``), so that only the file's events
reach them, as they reach a worker in another process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from litetasks._runtime.inotify import InotifyWatch, parse_events
from litetasks._runtime.wakeup import Waiter
from litetasks._store.doorbell import Doorbell, doorbell_path, unlisten
from tests.harness import subprocess_env

# Every test runs with each way rings of other processes reach a waiter (conftest.watcher).
pytestmark = pytest.mark.usefixtures("watcher")


@pytest.fixture
def elsewhere(queue_path: Path) -> Iterator[Waiter]:
    """A waiter that only the doorbell file's events reach, like one in another process."""
    with Waiter(queue_path) as waiter:
        assert waiter.is_watching
        unlisten(waiter.path, waiter)
        yield waiter


def _quiet(waiter: Waiter) -> None:
    """Let the file events already on their way arrive, so that a later wake is a new one."""
    while waiter.wait(0.2):
        waiter.clear()


def test_a_waiter_that_looked_again_wakes_for_a_commit_right_after_the_one_that_woke_it(
    queue_path: Path, elsewhere: Waiter
) -> None:
    bell = Doorbell(queue_path)
    elsewhere.clear()
    bell.ring()
    assert elsewhere.wait(5)
    _quiet(elsewhere)
    # Each time, the worker looked for work again (clear, then the claim) and went to sleep;
    # each commit follows the one that woke it by about a millisecond.
    for _ in range(20):
        elsewhere.clear()
        bell.ring()
        assert elsewhere.wait(5)


def _touches(watch: InotifyWatch) -> int:
    """How many changes to the ring file ``watch`` saw since the last call."""
    count = 0
    while True:
        try:
            data = os.read(watch.fileno(), 65536)
        except BlockingIOError:
            return count
        count += sum(1 for _, name in parse_events(data) if name == b"ring")


def test_rings_while_no_waiter_looked_again_do_not_touch_the_file(
    queue_path: Path, elsewhere: Waiter
) -> None:
    bell = Doorbell(queue_path)
    touches = InotifyWatch(doorbell_path(queue_path).parent, "ring")  # counts, wakes no one
    try:
        elsewhere.clear()
        bell.ring()
        assert elsewhere.wait(5)
        _quiet(elsewhere)  # which clears: a look for work
        bell.ring()  # answers that look
        assert _touches(touches) > 0
        for _ in range(50):  # the waiter is busy: it has not looked for work since
            bell.ring()
        assert _touches(touches) == 0
        elsewhere.clear()
        bell.ring()
        assert elsewhere.wait(5)
        assert _touches(touches) == 1
    finally:
        touches.close()


def test_every_waiter_that_looked_wakes_on_one_ring(queue_path: Path) -> None:
    with Waiter(queue_path) as first, Waiter(queue_path) as second:
        for waiter in (first, second):
            unlisten(waiter.path, waiter)
        bell = Doorbell(queue_path)
        bell.ring()
        _quiet(first)
        _quiet(second)
        first.clear()
        second.clear()
        bell.ring()
        assert first.wait(5)
        assert second.wait(5)


def test_a_ring_in_this_process_wakes_its_waiters_even_when_no_waiter_looked_again(
    queue_path: Path,
) -> None:
    with Waiter(queue_path) as waiter:
        bell = Doorbell(queue_path)
        waiter.clear()
        bell.ring()
        assert waiter.wait(5)
        _quiet(waiter)
        # No clear() in another process since: the file is not touched, but a waiter of this
        # process is reached directly.
        waiter.clear()
        bell.ring()
        bell.ring()
        assert waiter.wait(5)


def test_rings_reach_waiters_of_a_doorbell_folder_made_anew(
    queue_path: Path, elsewhere: Waiter
) -> None:
    bell = Doorbell(queue_path)
    bell.ring()  # maps the ring file of the folder that is about to go
    elsewhere.stop()
    shutil.rmtree(doorbell_path(queue_path).parent)
    with Waiter(queue_path) as waiter:
        unlisten(waiter.path, waiter)
        waiter.clear()
        deadline = time.monotonic() + 5
        while not waiter.wait(0.02):  # each commit rings; within 0.1 s one reaches the new file
            assert time.monotonic() < deadline, "no ring reached the new doorbell file"
            bell.ring()


PRODUCER = """
import sys
from pathlib import Path
from litetasks._store.doorbell import Doorbell
bell = Doorbell(Path(sys.argv[1]))
for line in sys.stdin:
    bell.ring()
    print("rung", flush=True)
"""


@pytest.mark.slow
def test_a_waiter_wakes_for_each_look_from_rings_of_another_process(
    queue_path: Path, elsewhere: Waiter
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(queue_path)],
        env=subprocess_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as producer:
        assert producer.stdin is not None
        assert producer.stdout is not None
        for _ in range(5):
            _quiet(elsewhere)
            elsewhere.clear()
            producer.stdin.write("ring\nring\n")  # two commits, one right after the other
            producer.stdin.flush()
            assert producer.stdout.readline() == "rung\n"
            assert producer.stdout.readline() == "rung\n"
            assert elsewhere.wait(5)
        producer.stdin.close()
        assert producer.wait(30) == 0


def test_a_process_exits_cleanly_while_a_daemon_thread_keeps_looking_and_ringing(
    tmp_path: Path,
) -> None:
    # A pool under runserver runs on daemon threads that still look for work (clear() sets the
    # listening byte) and ring while the interpreter exits; the byte's page was unmapped by an
    # exit-time finalizer first, and the process died of SIGSEGV at a reload or Ctrl-C.
    script = f"""
import threading
from pathlib import Path
from litetasks._runtime.wakeup import Waiter
from litetasks._store.doorbell import Doorbell

queue = Path({str(tmp_path / "tasks.sqlite3")!r})
started = threading.Event()

def keep_looking():
    waiter = Waiter(queue)
    waiter.start()
    bell = Doorbell(queue)
    while True:
        waiter.clear()
        bell.ring()
        started.set()

for _ in range(4):
    threading.Thread(target=keep_looking, daemon=True).start()
started.wait(10)
"""
    for _ in range(5):
        done = subprocess.run(
            [sys.executable, "-c", script],
            check=False,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
