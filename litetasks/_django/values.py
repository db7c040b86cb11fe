"""Task arguments and return values as JSON: what the queue file may hold, checked both ways.

Django's ``normalize_json`` decides what a value becomes (tuples become lists, and so on);
litetasks also refuses what JSON would silently change (dict keys that are not strings) and
nesting too deep for every worker to load.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from .compat import normalize_json

__all__ = [
    "MAX_JSON_DEPTH",
    "check_json_value",
    "dump_json",
    "load_json",
    "normalized_arguments",
    "normalized_json",
]

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
        return _plain(value, depth)
    except _NotPlain:  # some other type, a key that is not a str, or too deep: the slow path
        pass
    try:
        value = normalize_json(value)
    except RecursionError:
        raise ValueError(_too_deep(where)) from None
    if value:
        check_json_value(value, where, depth)
    return value


class _NotPlain(Exception):
    """A value ``_plain`` leaves to ``normalize_json`` and ``check_json_value``."""


def _plain(value: Any, depth: int) -> Any:
    """``normalized_json(value)`` for a value made only of the built-in JSON types themselves
    (str, int, float, bool, None, and lists, tuples and str-keyed dicts of them, not nested
    too deep); raises ``_NotPlain`` for anything else.

    What sites pass, checked by type identity in one walk: ``normalize_json`` matches every
    value against abstract classes (``Mapping``, ``Sequence``), which cost more than the rest
    of an enqueue's Python work, and ``check_json_value`` walks the value a second time.
    """
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool or kind is float:
        return value
    if depth >= MAX_JSON_DEPTH:
        raise _NotPlain
    if kind is dict:
        normal = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            normal[key] = _plain(item, depth + 1)
        return normal
    if kind is list or kind is tuple:
        return [_plain(item, depth + 1) for item in value]
    raise _NotPlain


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder() -> Callable[[Any], str]:
    """``json.dumps`` with its defaults, less the cost of building an encoder on every call
    (a third of a small dump): the C encoder ``json.dumps`` itself builds, built once.

    Without a cycle check: the values it gets are copies ``normalized_json`` just made, which
    hold no cycle. Where the C encoder is missing or differs, ``json.dumps`` itself.
    """
    try:
        make = json.encoder.c_make_encoder  # type: ignore[attr-defined]
        ascii_text = json.encoder.encode_basestring_ascii
        iterencode = make(None, _refuse, ascii_text, None, ": ", ", ", False, False, True)
        sample = [1, -2.5, float("nan"), "é\ud800", None, True, {"k": [{}]}]
        if "".join(iterencode(sample, 0)) != json.dumps(sample):
            raise TypeError
    except (AttributeError, TypeError):
        return json.dumps

    def dumps(value: Any) -> str:
        return "".join(iterencode(value, 0))

    return dumps


dump_json: Callable[[Any], str] = _encoder()
"""``json.dumps(value)``, for a value ``normalized_json`` returned (so without a cycle)."""


def load_json(text: str, where: str, depth: int = 0) -> Any:
    """Decode stored JSON text, refused as ``check_json_value`` refuses (``ValueError``)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(_too_deep(where)) from None
    if value:
        check_json_value(value, where, depth)
    return value


def normalized_arguments(args: Any, kwargs: Any, task_path: str) -> tuple[Any, Any]:
    """Return a call's ``args`` and ``kwargs`` as ``normalized_json`` makes them.

    A value JSON cannot store is refused naming where it is (``args[0]``, ``kwargs["order"]``,
    ``kwargs["items"][2]``) and what to pass instead: a model instance's pk, an ISO string for a
    date or time, ``str()`` of a ``Decimal`` or ``UUID``.
    """
    try:  # what sites pass: normalized_json's first step, for both at once
        return _plain(args, -1), _plain(kwargs, -1)
    except _NotPlain:
        pass
    normal = []
    for value, where, root in (
        (args, "the task's args", "args"),
        (kwargs, "the task's kwargs", "kwargs"),
    ):
        try:
            normal.append(normalized_json(value, where, depth=-1))
        except (TypeError, ValueError) as exc:
            found = _unsupported(value, root)
            if found is None:
                raise
            path, bad = found
            raise type(exc)(
                f"{path} of {task_path} is {_what(bad)}, which JSON cannot store: "
                f"{_instead(bad)} Nothing was enqueued."
            ) from exc
    return normal[0], normal[1]


def _unsupported(value: Any, path: str, depth: int = 0) -> tuple[str, Any] | None:
    """The first place in ``value`` that ``normalize_json`` refuses, and what is there (None
    for nesting too deep, which ``normalized_json`` reports)."""
    if isinstance(value, (str, int, float, bool)) or value is None or depth > MAX_JSON_DEPTH:
        return None
    if isinstance(value, bytes):
        return (path, value) if not _is_utf8(value) else None
    if not isinstance(value, (Mapping, Sequence)):
        return path, value
    for where, item in _items(value, path):
        found = _unsupported(item, where, depth + 1)
        if found is not None:
            return found
    return None


def _items(value: Mapping[Any, Any] | Sequence[Any], path: str) -> Iterator[tuple[str, Any]]:
    """Each key and item of a dict (``kwargs["order"]``), or item of a list (``args[0]``)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield f"{path} key {key!r}", key
            yield f"{path}[{json.dumps(key) if isinstance(key, str) else repr(key)}]", item
    else:
        for index, item in enumerate(value):
            yield f"{path}[{index}]", item


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _what(value: Any) -> str:
    kind = type(value)
    if isinstance(value, bytes):
        return "bytes that are not UTF-8 text"
    name = f"{kind.__module__}.{kind.__qualname__}"
    if _is_model_instance(value):
        return f"a model instance ({name})"
    if kind.__module__ == "builtins":  # "an object", "a set"
        return f"{'an' if kind.__qualname__[0] in 'aeiou' else 'a'} {kind.__qualname__}"
    return f"a {kind.__qualname__} ({name})"


def _instead(value: Any) -> str:
    """What to pass instead of ``value``, and how the task gets it back."""
    if _is_model_instance(value):
        return "pass its primary key (obj.pk) and load the object in the task."
    for kind in (datetime, date, time):  # datetime first: it is also a date
        if isinstance(value, kind):
            return (
                f"pass an ISO string (value.isoformat()) and read it in the task with "
                f"{kind.__name__}.fromisoformat()."
            )
    if isinstance(value, (Decimal, uuid.UUID)):
        return f"pass str(value) and read it in the task with {type(value).__name__}(...)."
    if isinstance(value, (set, frozenset)):
        return "pass a list (sorted(value))."
    if isinstance(value, bytes):
        return "pass base64.b64encode(value).decode() and decode it in the task."
    return (
        "pass JSON values (str, int, float, bool, None, and lists and dicts of them) or an id "
        "to load the object in the task."
    )


def _is_model_instance(value: Any) -> bool:
    from django.db.models import Model

    return isinstance(value, Model)
