"""A forward or an export leaves a row it cannot read as it is, says why, and moves the rest.

Rows are corrupted with raw ``UPDATE`` statements, as in test_malformed_rows.py. Before, text
that is not UTF-8 made apsw raise in the forward's or the export's SELECT and the whole command
stopped; a blob where text belongs (``args`` = x'5b5d') was forwarded with the arguments ``[]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from litetasks._store.records import JobState
from litetasks._store.store import Store
from tests.corruption import raw_row
from tests.store.test_malformed_rows import CASES, START_US, corrupt, enqueue

# Columns a forward and an export do not read: a row bad there moves (nothing of it is lost).
NOT_READ = {"due_at"}
CANNOT_READ = "its row holds values litetasks did not write and cannot read: "


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "tasks.sqlite3", clock=lambda: START_US) as opened:
        yield opened


def path_of(store: Store) -> Path:
    return Path(store._db.filename)


def one_bad_among_three(store: Store, column: str, value: str) -> tuple[int, tuple[object, ...]]:
    """Enqueue "first", "bad" and "last", corrupt ``column`` of "bad" with the SQL ``value``;
    the bad row's seq and its raw row as stored."""
    for name in ("first", "bad", "last"):
        enqueue(store, name)
    seq = corrupt(store, "bad", column, value)
    return seq, raw_row(path_of(store), seq)


@pytest.mark.parametrize(("column", "value"), CASES)
def test_a_forward_leaves_a_row_it_cannot_read_as_it_was_and_takes_the_others(
    store: Store, column: str, value: str
) -> None:
    seq, before = one_bad_among_three(store, column, value)

    batch = store.forwarding.take("target", limit=10)

    taken = [item.job.job_id for item in batch.taken]
    if column in NOT_READ:
        assert (taken, batch.unreadable) == (["first", "bad", "last"], [])
        return
    assert taken == ["first", "last"]
    [refused] = batch.unreadable
    assert refused.seq == seq
    assert refused.reason.startswith(f"{CANNOT_READ}column {column!r} holds ")
    assert raw_row(path_of(store), seq) == before
    for item in batch.taken:  # the target took them
        assert store.forwarding.mark(item.job.job_id, f"on-target-{item.seq}")
    again = store.forwarding.take("target", limit=10, skip=[seq])
    assert (again.taken, again.unreadable) == ([], [])


@pytest.mark.parametrize(("column", "value"), CASES)
def test_an_export_leaves_a_row_it_cannot_read_as_it_was_and_writes_the_others(
    store: Store, column: str, value: str
) -> None:
    seq, before = one_bad_among_three(store, column, value)

    export = store.forwarding.export()

    exported = [json.loads(line)["id"] for line in export.lines[1:]]
    if column in NOT_READ:
        assert (exported, export.unreadable) == (["first", "bad", "last"], [])
        return
    assert exported == ["first", "last"]
    [refused] = export.unreadable
    # The task path for messages: bytes that are not UTF-8 replaced.
    shown = "tests.tasks.noop"
    if column == "task_path":
        shown = {"x'00'": "\x00", "CAST(x'ff' AS TEXT)": "\ufffd"}[value]
    assert (refused.seq, refused.task_path) == (seq, shown)
    assert refused.reason.startswith(f"{CANNOT_READ}column {column!r} holds ")
    assert raw_row(path_of(store), seq) == before


def test_arguments_that_are_not_json_of_their_kind_are_refused(store: Store) -> None:
    enqueue(store, "list")
    enqueue(store, "object")
    corrupt(store, "list", "args", "'{}'")
    corrupt(store, "object", "kwargs", "'[bad'")

    refused = store.forwarding.take("target", limit=10).unreadable

    assert [row.reason.removeprefix(CANNOT_READ) for row in refused] == [
        "column 'args' holds '{}' (text), not a JSON list. Something other than litetasks "
        "wrote it: mend the row, or delete it.",
        "column 'kwargs' holds '[bad' (text), not a JSON object. Something other than "
        "litetasks wrote it: mend the row, or delete it.",
    ]


def test_a_row_left_under_way_that_went_bad_stays_under_way_and_is_refused(store: Store) -> None:
    enqueue(store, "bad")
    enqueue(store, "good")
    [first] = store.forwarding.take("target", limit=1, new_id=lambda: "chosen").taken
    assert first.job.job_id == "bad"  # a forward killed here leaves it under way
    seq = corrupt(store, "bad", "task_path", "CAST(x'ff' AS TEXT)")
    before = raw_row(path_of(store), seq)

    batch = store.forwarding.take("target", limit=10)

    assert [item.job.job_id for item in batch.taken] == ["good"]
    assert [row.seq for row in batch.unreadable] == [seq]
    assert raw_row(path_of(store), seq) == before
    assert store.forwarding.mark("good", "on-target")
    assert store.get("good").state is JobState.FORWARDED
    again = store.forwarding.take("target", limit=10, skip=[seq])
    assert (again.taken, again.unreadable) == ([], [])
