"""Fixtures shared by the runtime tests."""

from __future__ import annotations

import pytest
from watchdog.events import FileSystemEvent

from litetasks._runtime import wakeup


@pytest.fixture
def file_events(monkeypatch: pytest.MonkeyPatch) -> list[FileSystemEvent]:
    """The events on the ring file that reach the watchers of this process, as they arrive."""
    seen: list[FileSystemEvent] = []
    original = wakeup._DoorbellHandler.dispatch

    def spy(self: wakeup._DoorbellHandler, event: FileSystemEvent) -> None:
        seen.append(event)
        original(self, event)

    monkeypatch.setattr(wakeup._DoorbellHandler, "dispatch", spy)
    return seen
