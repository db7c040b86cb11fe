"""Hide secrets in task arguments and return values before anyone is shown them.

``OPTIONS["redact"]`` names keys; a value stored under a key that contains one of them (any
case, at any depth of dicts and lists) is shown as ``REDACTED``. Only what is shown changes:
the stored row and what the task receives stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["DEFAULT_REDACT", "REDACTED", "hidden_values", "redact", "redaction_keys"]

REDACTED = "********"
DEFAULT_REDACT: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "credential",
    "private_key",
    "access_key",
    "session",
    "cookie",
)


def redaction_keys(configured: Iterable[Any] | None) -> tuple[str, ...]:
    """The keys to hide: ``configured`` (its text entries, lowercased), else the defaults."""
    if configured is None:
        return DEFAULT_REDACT
    return tuple(key.lower() for key in configured if isinstance(key, str) and key)


def redact(value: Any, keys: tuple[str, ...], depth: int = 0) -> Any:
    """Return ``value`` with every value under a key containing one of ``keys`` replaced."""
    if depth > 100:  # deeper than litetasks stores (values.py): shown as it is
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if _is_secret(k, keys) else redact(v, keys, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(item, keys, depth + 1) for item in value]
    return value


def _is_secret(key: Any, keys: tuple[str, ...]) -> bool:
    lowered = str(key).lower()
    return any(word in lowered for word in keys)


def hidden_values(value: Any, keys: tuple[str, ...], depth: int = 0) -> list[Any]:
    """Return the values ``redact`` hides in ``value`` (to keep a search from finding them)."""
    if depth > 100:
        return []
    if isinstance(value, dict):
        found: list[Any] = []
        for k, v in value.items():
            found.extend([v] if _is_secret(k, keys) else hidden_values(v, keys, depth + 1))
        return found
    if isinstance(value, list):
        return [hidden for item in value for hidden in hidden_values(item, keys, depth + 1)]
    return []
