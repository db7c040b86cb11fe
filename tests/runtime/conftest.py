"""Fixtures shared by the runtime tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from watchdog.events import FileSystemEvent

from litetasks._runtime import inotify, wakeup


@pytest.fixture
def file_events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the events on the doorbell's folder that reach the watchers of this
    process, as they arrive: read by a waiting thread (inotify) or by watchdog's observer."""
    seen: list[str] = []
    original_dispatch = wakeup._DoorbellHandler.dispatch
    original_parse = inotify.parse_events

    def spy_dispatch(self: wakeup._DoorbellHandler, event: FileSystemEvent) -> None:
        seen.append(os.fsdecode(event.src_path))
        original_dispatch(self, event)

    def spy_parse(data: bytes) -> list[tuple[int, bytes]]:
        events = original_parse(data)
        seen.extend(os.fsdecode(name) for _, name in events)
        return events

    monkeypatch.setattr(wakeup._DoorbellHandler, "dispatch", spy_dispatch)
    monkeypatch.setattr(inotify, "parse_events", spy_parse)
    return seen


@pytest.fixture(params=["inotify", "watchdog"])
def watcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each way rings of other processes reach a Waiter: the waiting thread reads inotify
    itself (Linux), or watchdog's observer threads pass them on (other platforms)."""
    if request.param == "watchdog":
        monkeypatch.setattr(inotify, "is_available", lambda: False)
    elif not inotify.is_available():
        pytest.skip("this platform has no inotify: its waiters use watchdog (the other case)")
    yield request.param
