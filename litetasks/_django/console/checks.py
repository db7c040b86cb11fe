"""System checks of the console's options (ids litetasks.E020-E029, W020-W029)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core import checks

__all__ = ["redact_checks"]


def redact_checks(redact: tuple[Any, ...] | None, alias: str) -> Iterator[checks.CheckMessage]:
    """Report ``OPTIONS["redact"]`` entries that hide nothing: not text, or empty."""
    where = f"TASKS[{alias!r}]['OPTIONS']['redact']"
    for entry in redact or ():
        if not isinstance(entry, str) or not entry.strip():
            yield checks.Error(
                f"{where} holds {entry!r}, which is not a key name: values under it would be "
                "shown unredacted.",
                hint=f"List key names as non-empty strings in {where}, such as "
                "['password', 'token'].",
                id="litetasks.E020",
            )
    if redact is not None and not redact:
        yield checks.Warning(
            f"{where} is empty: the console shows every argument, passwords and tokens too.",
            hint=f"Remove {where} to hide the default keys (password, token, secret, api_key, "
            "...), or list the keys to hide.",
            id="litetasks.W020",
        )
