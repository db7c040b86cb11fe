"""How the console shows stored values: times, ages, arguments with secrets hidden, charts."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..._store.clock import is_time
from ..._store.redaction import hidden_values, redact, redaction_keys
from ..backend import SQLiteBackend

__all__ = [
    "age",
    "bar_chart",
    "capped",
    "finds_a_secret",
    "moment",
    "shown_json",
    "summary_json",
]


def moment(us: int | None) -> datetime | None:
    """The aware UTC datetime of a stored time (None for none, or a time litetasks does not
    store); templates show it in the current time zone."""
    if us is None or not is_time(us):
        return None
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc)


def age(us: int | None, now_us: int) -> str:
    """How long ago ``us`` was, in words a glance reads ("4 s", "3 min", "2 h", "5 d")."""
    if us is None:
        return ""
    seconds = max(0, (now_us - us) // 1_000_000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def capped(count: int, is_capped: bool) -> str:
    """A count as shown: ``n+`` when older rows were not counted (see overview.py)."""
    return f"{count:,}+" if is_capped else f"{count:,}"


def _loaded(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def shown_json(backend: SQLiteBackend, text: str | None) -> str:
    """Stored JSON text, indented, with every secret (``OPTIONS["redact"]``) hidden."""
    value = redact(_loaded(text), redaction_keys(backend.config.redact))
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def summary_json(backend: SQLiteBackend, args: str, kwargs: str, length: int = 80) -> str:
    """Arguments on one line, secrets hidden, cut to ``length`` characters."""
    keys = redaction_keys(backend.config.redact)
    parts = [json.dumps(redact(_loaded(args), keys), ensure_ascii=False)]
    value = redact(_loaded(kwargs), keys)
    if value:
        parts.append(json.dumps(value, ensure_ascii=False))
    text = " ".join(parts)
    return text if len(text) <= length else text[: length - 1] + "…"


def finds_a_secret(backend: SQLiteBackend, text: str, *stored: str) -> bool:
    """Whether ``text`` occurs in a value the console hides: a search must not reveal it."""
    keys = redaction_keys(backend.config.redact)
    for value in stored:
        for hidden in hidden_values(_loaded(value), keys):
            shown = hidden if isinstance(hidden, str) else json.dumps(hidden, ensure_ascii=False)
            if text in shown or text in json.dumps(hidden):
                return True
    return False


def bar_chart(
    buckets: list[tuple[int, int, int]], *, label: str, width: int = 600, height: int = 120
) -> SafeString:
    """An inline SVG of successes stacked under failures, one bar per bucket.

    Colours come from the admin's CSS variables where it has them, so dark mode applies.
    """
    top = max([ok + failed for _, ok, failed in buckets] + [1])
    step = width / max(len(buckets), 1)
    bars = []
    for i, (start, ok, failed) in enumerate(buckets):
        x = round(i * step, 1)
        ok_h = round(ok / top * (height - 14), 1)
        failed_h = round(failed / top * (height - 14), 1)
        title = f"{moment(start):%Y-%m-%d %H:%M} UTC: {ok} successful, {failed} failed"
        bars.append((x, height - ok_h, max(step - 1, 1), ok_h, "lt-ok", title))
        bars.append((x, height - ok_h - failed_h, max(step - 1, 1), failed_h, "lt-failed", title))
    rects = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" class="{}"><title>{}</title></rect>',
        bars,
    )
    return format_html(
        '<svg class="lt-chart" viewBox="0 0 {} {}" role="img" aria-label="{}">'
        '<text x="2" y="10" class="lt-axis">max {}</text>{}</svg>',
        width,
        height,
        label,
        top,
        rects,
    )
