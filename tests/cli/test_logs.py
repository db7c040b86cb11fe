"""The log handler of ``litetasks run``: whole lines, from any number of threads, no lock."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from litetasks._cli.logs import LineFormatter, LineHandler

REPO = Path(__file__).resolve().parents[2]

_MANY_THREADS = """
import logging, sys, threading
from litetasks._cli.logs import LineHandler

handler = LineHandler()
handler.setFormatter(logging.Formatter("%(threadName)s %(message)s"))
log = logging.getLogger("lines")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False

def talk(index):
    for line in range(500):
        width = 6000 if line % 50 == 0 else 10 + line % 90  # some beyond PIPE_BUF
        log.info("%d %d %s end", index, line, "x" * width)

threads = [threading.Thread(target=talk, args=(i,), name=f"t{i}") for i in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("printed to the stream", file=sys.stderr)
"""


@pytest.mark.parametrize("into", ["file", "pipe"])
def test_lines_from_many_threads_arrive_whole_and_all_of_them(tmp_path: Path, into: str) -> None:
    # A file is written without the lock, a pipe under it (a long line written to a pipe in
    # pieces could be split by another thread's short one).
    argv = [sys.executable, "-c", _MANY_THREADS]
    if into == "file":
        with (tmp_path / "log").open("w") as sink:
            subprocess.run(argv, cwd=REPO, stderr=sink, timeout=60, check=True)
        output = (tmp_path / "log").read_text()
    else:
        done = subprocess.run(
            argv, cwd=REPO, stderr=subprocess.PIPE, text=True, timeout=60, check=True
        )
        output = done.stderr
    lines = output.splitlines()
    assert lines[-1] == "printed to the stream"
    seen = set()
    for line in lines[:-1]:
        name, index, number, filler, end = line.split(" ")
        assert (name, end, set(filler)) == (f"t{index}", "end", {"x"}), line[:80]
        width = 6000 if int(number) % 50 == 0 else 10 + int(number) % 90
        assert len(filler) == width
        seen.add((int(index), int(number)))
    assert seen == {(i, n) for i in range(8) for n in range(500)}


def test_a_stream_without_a_file_descriptor_is_written_as_a_stream_handler_would() -> None:
    buffer = io.StringIO()
    handler = LineHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("litetasks.tests.buffer")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("caf\u00e9 %s", "\u2603")
    finally:
        log.removeHandler(handler)
    assert buffer.getvalue() == "WARNING caf\u00e9 \u2603\n"


def test_line_formatter_writes_what_logging_formatter_writes_across_seconds() -> None:
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    standard, cached = logging.Formatter(fmt), LineFormatter(fmt)
    base = 1_765_000_000.0
    # Same second twice (the second one from the cache), the next second, then back.
    for created in (base + 0.25, base + 0.75, base + 1.5, base + 0.999, base + 86_400.125):
        record = logging.LogRecord("django.tasks", logging.INFO, __file__, 1, "id=%s", ("a",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert cached.format(record) == standard.format(record)
        assert cached.formatTime(record, "%H:%M") == standard.formatTime(record, "%H:%M")
