"""Write into a queue file behind litetasks' back, as another program would; read a row as bytes."""

from __future__ import annotations

from pathlib import Path

import apsw


def corrupt(path: Path, job_id: str, column: str, value: str) -> int:
    """Write ``value`` (SQL) into ``column`` of ``job_id`` with a connection of its own; its seq."""
    db = apsw.Connection(str(path))
    try:
        seq = int(db.execute("SELECT seq FROM jobs WHERE job_id = ?", (job_id,)).get)  # type: ignore[arg-type]
        db.execute(f"UPDATE jobs SET {column} = {value} WHERE seq = ?", (seq,))
    finally:
        db.close()
    return seq


def raw_row(path: Path, seq: int) -> tuple[object, ...]:
    """Every column of row ``seq``, as its type and its bytes in hex (text that is not UTF-8
    cannot be read as text)."""
    db = apsw.Connection(str(path))
    try:
        columns = [str(row[1]) for row in db.execute("PRAGMA table_info(jobs)")]
        values = ", ".join(f"typeof({c}), hex({c})" for c in columns)
        row = db.execute(f"SELECT {values} FROM jobs WHERE seq = ?", (seq,)).fetchone()
    finally:
        db.close()
    assert row is not None
    return tuple(row)
