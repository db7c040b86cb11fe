"""The log handler of ``litetasks run``: one line, one ``write()``, no lock held across it.

Django logs every task twice (``task_started``, ``task_finished``) at INFO. Through
``logging.StreamHandler`` each line takes the handler's lock, then writes while holding it;
the write releases the GIL, so with several executor threads every line became a queue of
threads handing the GIL and the lock to each other (a pool of four threads drained no-op
tasks at a third of one thread's rate). When the stream is a regular file, a line is
formatted without the lock and written with a single ``os.write()``: Linux keeps concurrent
writes to one open file whole and in sequence. A pipe, a terminal or a socket (journald) keeps
only writes of up to ``PIPE_BUF`` bytes whole, so a long line could be split by a short one:
there the handler writes as ``StreamHandler`` does, under its lock.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import time
from typing import TYPE_CHECKING, TextIO

__all__ = ["LineFormatter", "LineHandler", "configure_logging", "parse_level"]

LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[TextIO]
else:  # subscriptable at run time only from Python 3.11
    _StreamHandler = logging.StreamHandler


class LineHandler(_StreamHandler):
    """A ``StreamHandler`` that writes lines to a regular file without taking its lock.

    Any other stream (a pipe, a terminal, a test runner's buffer) is written as
    ``StreamHandler`` writes it.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._fd: int | None = None
        try:
            fd = self.stream.fileno()
            if stat.S_ISREG(os.fstat(fd).st_mode):
                self._fd = fd
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            pass

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
            self.stream.flush()  # what was printed to the stream before comes first
            written = os.write(self._fd, data)
            if written < len(data):  # a short write, only when the disk is full: the rest
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(self._fd, view) :]
        except Exception:
            self.handleError(record)
        return True


class LineFormatter(logging.Formatter):
    """A ``logging.Formatter`` that formats the date and time of ``%(asctime)s`` once a second.

    ``time.strftime()`` of the local time was the costliest step of formatting a line, and a
    worker formats two per task. Lines read exactly as ``logging.Formatter`` writes them.
    """

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        # (second, its local time as text), replaced whole: threads share this formatter.
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second, text = self._second
        if int(record.created) != second:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (int(record.created), text)
        msec_format = self.default_msec_format
        return text if msec_format is None else msec_format % (text, record.msecs)


def parse_level(level: str) -> int:
    """Return the number of a level name (``debug``, ``INFO``…); refuse an unknown one."""
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        from ..exceptions import ConfigurationError

        raise ConfigurationError(f"Unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR.")
    return number


def configure_logging(level: str | None, task_loggers: tuple[str, ...]) -> None:
    """Set logging up for ``litetasks run``, after ``django.setup()`` has applied the settings.

    ``task_loggers`` are the loggers of task lines: ``litetasks`` and Django's task API
    (``django.tasks``, or ``django_tasks`` with the backport). ``level`` is ``--log-level``
    (None: not given, INFO).

    - With Django's default logging (no ``LOGGING`` setting): one handler, on the root logger,
      prints every line at ``level`` or above; Django's own console handler (which prints the
      ``django`` loggers' lines when ``DEBUG`` is on) is taken off, so a line is printed once.
      Its other handlers (``mail_admins``) stay.
    - With your ``LOGGING`` (or ``LOGGING_CONFIG = None``): no handler is added or changed.
      ``--log-level``, when given, sets the task loggers' level; what is printed, and where, is
      up to your handlers.
    """
    from django.conf import settings

    number = parse_level(level or "INFO")
    default = not settings.is_overridden("LOGGING") and (
        settings.LOGGING_CONFIG == "logging.config.dictConfig"
    )
    if default:
        django_logger = logging.getLogger("django")
        for console in [h for h in django_logger.handlers if h.get_name() == "console"]:
            django_logger.removeHandler(console)
        handler = LineHandler()
        handler.setLevel(number)
        handler.setFormatter(LineFormatter(LINE_FORMAT))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(number)
    if default or level is not None:
        for name in task_loggers:
            # Django's "django" logger is at INFO: DEBUG lines of its task API need their own.
            logging.getLogger(name).setLevel(number)
