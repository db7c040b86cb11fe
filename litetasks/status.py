"""Print a queue file's contents for ``litetasks status``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from .records import JobState

if TYPE_CHECKING:
    from .backend import SQLiteBackend

__all__ = ["print_status", "status_data"]


def status_data(
    backend: SQLiteBackend, counts: dict[tuple[str, JobState], int]
) -> dict[str, object]:
    """Return the status as plain data: per queue, a count per state."""
    queues: dict[str, dict[str, int]] = {}
    for (queue, state), count in sorted(counts.items()):
        queues.setdefault(queue, {s.value: 0 for s in JobState})[state.value] = count
    for queue in sorted(backend.queues):
        queues.setdefault(queue, {s.value: 0 for s in JobState})
    return {"backend": backend.alias, "path": str(backend.config.store.path), "queues": queues}


def print_status(
    backend: SQLiteBackend, counts: dict[tuple[str, JobState], int], *, as_json: bool
) -> None:
    data = status_data(backend, counts)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(title=f"litetasks: {data['path']}")
    table.add_column("queue")
    for state in JobState:
        table.add_column(state.value, justify="right")
    queues = data["queues"]
    assert isinstance(queues, dict)
    for queue, by_state in queues.items():
        table.add_row(queue, *(str(by_state[s.value]) for s in JobState))
    Console().print(table)
