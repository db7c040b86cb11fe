"""watchdog's benign stop-race ERROR never reaches stderr; its other messages still do."""

from __future__ import annotations

import logging

import litetasks._runtime.wakeup  # noqa: F401  (installs the filter)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_only_the_stop_race_message_is_dropped() -> None:
    watchdog_logger = logging.getLogger("watchdog.observers.inotify")
    collect = _Collect()
    watchdog_logger.addHandler(collect)
    try:
        watchdog_logger.error("InotifyEmitter.queue_events() called when the thread is inactive")
        watchdog_logger.error("inotify watch limit reached")
    finally:
        watchdog_logger.removeHandler(collect)
    assert collect.messages == ["inotify watch limit reached"]
