"""Find the Django settings, set Django up, and look up a litetasks backend, for the CLI."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from ..exceptions import ConfigurationError

__all__ = ["find_settings_module", "get_backend", "setup_django"]

_SETDEFAULT = re.compile(
    r"""os\.environ\.setdefault\(\s*["']DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']\s*\)"""
)


def find_settings_module(explicit: str | None, folder: Path) -> str:
    """Return ``--settings``, else ``DJANGO_SETTINGS_MODULE``, else what ``manage.py`` sets."""
    if explicit:
        return explicit
    from_env = os.environ.get("DJANGO_SETTINGS_MODULE")
    if from_env:
        return from_env
    manage = folder / "manage.py"
    if manage.is_file():
        match = _SETDEFAULT.search(manage.read_text(errors="replace"))
        if match:
            return match.group(1)
    raise ConfigurationError(
        "No Django settings found: pass --settings mysite.settings, set DJANGO_SETTINGS_MODULE, "
        f"or run from the folder that holds manage.py (looked in {str(folder)!r})."
    )


def setup_django(settings: str | None, pythonpath: str | None) -> None:
    """Make the project importable (as ``manage.py`` does) and call ``django.setup()``."""
    folder = Path.cwd()
    # Inserted in reverse: --pythonpath ends up first, as with manage.py --pythonpath.
    for entry in (str(folder), pythonpath):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    module = find_settings_module(settings, folder)
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    from .._runtime.autorun import suppress

    suppress()  # a litetasks command is never a web server: OPTIONS["autorun"] must not apply
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"Cannot import the settings module {module!r} ({exc}). Check --settings, "
            "DJANGO_SETTINGS_MODULE, or add the project folder with --pythonpath."
        ) from exc
    except ImproperlyConfigured as exc:
        raise ConfigurationError(f"Django is not configured correctly: {exc}") from exc


def get_backend(alias: str):  # type: ignore[no-untyped-def]
    """Return the litetasks backend ``alias``; raise ``ConfigurationError`` if it is not one."""
    from django.conf import settings

    from .._django.backend import SQLiteBackend
    from .._django.compat import InvalidTaskBackend, task_backends

    configured = getattr(settings, "TASKS", {})
    if alias not in configured:
        raise ConfigurationError(
            f"No task backend {alias!r} in settings.TASKS (configured: "
            f"{', '.join(sorted(configured)) or 'none'}). Add "
            f'TASKS = {{"{alias}": {{"BACKEND": "litetasks.backend.SQLiteBackend"}}}}.'
        )
    try:
        backend = task_backends[alias]
        getattr(backend, "config", None)  # litetasks raises bad OPTIONS here, not when made
    except InvalidTaskBackend as exc:
        raise ConfigurationError(str(exc)) from exc
    if not isinstance(backend, SQLiteBackend):
        raise ConfigurationError(
            f"TASKS[{alias!r}] uses {type(backend).__module__}.{type(backend).__qualname__}, "
            'not litetasks. Set its BACKEND to "litetasks.backend.SQLiteBackend".'
        )
    return backend


def check_queues(backend: object, queues: list[str]) -> tuple[str, ...] | None:
    """Return the queues to serve (None: all); refuse names the backend does not configure."""
    configured: set[str] = getattr(backend, "queues", set())
    unknown = [q for q in queues if configured and q not in configured]
    if unknown:
        alias = getattr(backend, "alias", "default")
        raise ConfigurationError(
            f"Unknown queue {unknown[0]!r} for backend {alias!r}. Configured queues: "
            f"{', '.join(sorted(configured))}. Add it to TASKS[{alias!r}]['QUEUES']."
        )
    return tuple(queues) if queues else None
