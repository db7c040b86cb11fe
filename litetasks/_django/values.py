"""Task arguments and return values as JSON: what the queue file may hold, checked both ways.

Django's ``normalize_json`` decides what a value becomes (tuples become lists, and so on);
litetasks also refuses what JSON would silently change (dict keys that are not strings) and
nesting too deep for every worker to load.
"""

from __future__ import annotations

import json
from typing import Any

from .compat import normalize_json

__all__ = ["MAX_JSON_DEPTH", "check_json_value", "load_json", "normalized_json"]

# How deep lists and dicts may nest in one argument or return value. Django's normalize_json
# recurses once or twice per level, so a value near Python's recursion limit (1000 frames)
# could be stored by a shallow caller and then fail to load in a worker, every time it is
# retried. 100 is also the default of Ruby's JSON parser (serde_json's is 128).
MAX_JSON_DEPTH = 100


def check_json_value(value: Any, where: str, depth: int = 0) -> None:
    """Refuse dict keys that JSON would silently turn into strings (``{1: "a"}``), and lists
    and dicts nested more than ``MAX_JSON_DEPTH`` levels deep.

    ``depth`` is how many lists and dicts enclose ``value``: -1 for an args list or kwargs
    dict, whose items are each checked as a value of their own.
    """
    if isinstance(value, (dict, list)) and depth >= MAX_JSON_DEPTH:
        raise ValueError(_too_deep(where))
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"Unsupported dict key {key!r} ({type(key).__name__}) in {where}: JSON object "
                    "keys are strings, so it would come back as a different value. Use str keys."
                )
            check_json_value(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, where, depth + 1)


def _too_deep(where: str) -> str:
    return (
        f"Lists and dicts in {where} are nested more than {MAX_JSON_DEPTH} levels deep, the "
        "most litetasks stores so that every worker can load them. Pass flatter data."
    )


def normalized_json(value: Any, where: str, depth: int = 0) -> Any:
    """Return ``normalize_json(value)``, refused as ``check_json_value`` refuses.

    Raises ``TypeError`` or ``ValueError`` (also for nesting too deep for ``normalize_json``).
    """
    try:
        value = normalize_json(value)
    except RecursionError:
        raise ValueError(_too_deep(where)) from None
    if value:
        check_json_value(value, where, depth)
    return value


def load_json(text: str, where: str, depth: int = 0) -> Any:
    """Decode stored JSON text, refused as ``check_json_value`` refuses (``ValueError``)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(_too_deep(where)) from None
    if value:
        check_json_value(value, where, depth)
    return value
