"""A claimed row's ``worker_ids`` reads as the JSON decoder reads it, whichever way it is split.

Compact lists of plain ids (as SQLite's ``json_insert`` writes them) are split without the
decoder (``rows._plain_worker_ids``); every other text goes through it. The record must not
tell which way a row went.
"""

from __future__ import annotations

import json

import pytest

from litetasks._store import sql
from litetasks._store.rows import decode_job

from .test_rows import DISTINCT

TEXTS = [
    '["w1"]',
    '["w1","w2"]',
    '["host:12:ab/0-0","host:13:cd/1-2","host:14:ef/0-1"]',
    '[""]',
    '["",""]',
    '["w1", "w2"]',  # not compact: the decoder reads it
    '[ "w1"]',
    '["w1" ]',
    '["caf\u00e9"]',
    '["a\\"b"]',  # an escaped quote
    '["a\\\\b"]',  # an escaped backslash
    '["\\u0041"]',
    '["a","b\\""]',
    '["a"",""b"]',  # not JSON
    '["]',  # not JSON, though it starts with [" and ends with "]
    '["a]',
    '["\x01"]',  # a raw control character: not JSON
    '["a\u2028b"]',  # valid JSON, not printable to Python
    '["a",1]',
    '["a",["b"]]',
    "[1]",
]


@pytest.mark.parametrize("text", TEXTS)
def test_worker_ids_decode_as_json_reads_them(text: str) -> None:
    row = [text if name == "worker_ids" else DISTINCT[name] for name in sql.JOB_COLUMN_NAMES]
    job = decode_job(row)
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    if isinstance(decoded, list) and all(type(item) is str for item in decoded):
        assert not job.malformed
        assert job.worker_ids == tuple(decoded)
    else:
        assert job.malformed
