"""Tasks the console's browser tests run in a real ``litetasks run`` pool."""

from __future__ import annotations

from pathlib import Path

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task  # type: ignore[no-redef]


@task
def fails_until(flag: str) -> str:
    """Fail until the file ``flag`` exists; then succeed."""
    if not Path(flag).exists():
        raise ValueError(f"not yet: {flag} does not exist")
    return "fixed"


@task
def always_fails(label: str, **kwargs: object) -> None:
    raise ValueError(f"always fails: {label}")
