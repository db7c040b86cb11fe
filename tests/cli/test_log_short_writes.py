"""A line the disk takes only in pieces (short ``write()``s) still reaches the file whole."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from litetasks._cli import logs
from litetasks._cli.logs import LineHandler


def test_a_line_written_in_short_pieces_reaches_the_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    sizes: list[int] = []

    def short_write(fd: int, data: bytes | memoryview) -> int:  # a nearly full disk
        written = real_write(fd, bytes(data[:7]))
        sizes.append(written)
        return written

    path = tmp_path / "worker.log"
    with path.open("w") as stream:
        handler = LineHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "line %s", ("x" * 40,), None)
        monkeypatch.setattr(logs.os, "write", short_write)
        handler.handle(record)
        monkeypatch.undo()

    assert path.read_text() == "line " + "x" * 40 + "\n"
    assert len(sizes) > 1
