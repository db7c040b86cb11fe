"""The log handler of ``litetasks run``: one line, one ``write()``, no lock held across it.

Django logs every task twice (``task_started``, ``task_finished``) at INFO. Through
``logging.StreamHandler`` each line takes the handler's lock, then writes while holding it;
the write releases the GIL, so with several executor threads every line became a queue of
threads handing the GIL and the lock to each other (a pool of four threads drained no-op
tasks at a third of one thread's rate). Here a line is formatted without the lock and written
with a single ``os.write()``, which the kernel keeps whole: for a pipe up to ``PIPE_BUF``
bytes, for a file always. Longer records (tracebacks) take the lock, so they are not
interleaved with each other either.
"""

from __future__ import annotations

import io
import logging
import os
import select
from typing import TYPE_CHECKING, TextIO

__all__ = ["LineHandler"]

# Lines up to this long are written without the lock (POSIX: pipe writes of at most PIPE_BUF
# bytes are atomic; Linux's PIPE_BUF is 4096).
_ATOMIC_BYTES = getattr(select, "PIPE_BUF", 512)


if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[TextIO]
else:  # subscriptable at run time only from Python 3.11
    _StreamHandler = logging.StreamHandler


class LineHandler(_StreamHandler):
    """A ``StreamHandler`` that writes straight to the stream's file descriptor.

    A stream without one (a test runner's capture buffer) is written as ``StreamHandler``
    writes it.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        try:
            self._fd: int | None = self.stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            self._fd = None

    def handle(self, record: logging.LogRecord) -> bool:
        if self._fd is None:
            return bool(super().handle(record))
        checked = self.filter(record)
        if not checked:
            return False
        if isinstance(checked, logging.LogRecord):  # Python 3.12: a filter may replace it
            record = checked
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            if len(data) <= _ATOMIC_BYTES:
                self._write(data)
            else:
                with self.lock:  # type: ignore[union-attr]
                    self._write(data)
        except Exception:
            self.handleError(record)
        return True

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        self.stream.flush()  # what was printed to the stream before comes first
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
