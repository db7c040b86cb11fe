"""System checks of a backend's setup: its OPTIONS, and the litetasks app.

They run from ``SQLiteBackend.check()``, which Django calls for every task backend whether or
not ``"litetasks"`` is in ``INSTALLED_APPS``; ``checks.py`` checks the queue file itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from django.apps import apps
from django.conf import settings
from django.core import checks

if TYPE_CHECKING:
    from .backend import SQLiteBackend

__all__ = ["app_missing", "setup_checks", "warn_if_app_missing"]

logger = logging.getLogger("litetasks")
_warned: set[str] = set()


def setup_checks(backend: SQLiteBackend) -> Iterator[checks.CheckMessage]:
    """Report OPTIONS that cannot work (E005), a missing litetasks app (W003), and a queue
    folder of another user (W004)."""
    where = f"TASKS[{backend.alias!r}]['OPTIONS']"
    if backend.config_error is not None:
        yield checks.Error(
            backend.config_error,
            hint=f"Fix {where}; the README's 'Settings' lists every option.",
            id="litetasks.E005",
        )
    missing = app_missing(backend.alias)
    if missing is not None:
        yield checks.Warning(missing, hint=_ADD_APP, id="litetasks.W003")
    if backend.config_error is None:
        store = backend.config.store
        yield from _check_owner(store.path, store.file_mode, where)


def _check_owner(path: Path, file_mode: int, where: str) -> Iterator[checks.CheckMessage]:
    """Warn when the queue folder is another user's: two users cannot share 0600 files."""
    try:
        owner = path.parent.stat().st_uid
    except OSError:  # a missing folder is litetasks.E001
        return
    user = os.geteuid()
    if owner == user:
        return
    if file_mode & 0o060 == 0o060:
        hint = (
            f"{where}['file_mode'] is {file_mode:#o}: put both users in the folder's group and "
            f"make it group-writable (chmod g+rwxs {str(path.parent)!r})."
        )
    else:
        hint = (
            "The queue file, its -wal and -shm are created readable and writable by their "
            "owner only (mode 0600), so a web server and a worker running as two users cannot "
            "share them. Run both as one user, or set "
            f"{where}['file_mode'] = 0o660, put both users in one group and make the folder "
            f"group-writable (chmod g+rwxs {str(path.parent)!r})."
        )
    yield checks.Warning(
        f"The folder of the queue file {str(path)!r} belongs to another user (uid {owner}) "
        f"than this process (uid {user}).",
        hint=hint,
        id="litetasks.W004",
    )


_ADD_APP = 'Add "litetasks" to INSTALLED_APPS.'


def app_missing(alias: str) -> str | None:
    """What a missing ``"litetasks"`` app costs, or None when it is installed."""
    if apps.is_installed("litetasks"):
        return None
    return (
        f'TASKS[{alias!r}] uses litetasks, but "litetasks" is not in INSTALLED_APPS: tasks '
        "are stored, but `python manage.py runserver` does not run them and `python manage.py "
        "litetasks` does not exist (the `litetasks` command still works)."
    )


def warn_if_app_missing(alias: str, config_error: str | None) -> None:
    """Log ``app_missing`` (and bad OPTIONS) once per alias, when the backend is made after
    the apps are ready, without the litetasks app.

    The system checks run only if the backend exists when they start, which the app makes sure
    of; without it, a backend made later (a view importing its tasks, while the URL checks
    run) is reported here instead. ``SILENCED_SYSTEM_CHECKS`` silences it too.
    """
    if not apps.ready or alias in _warned or "litetasks.W003" in settings.SILENCED_SYSTEM_CHECKS:
        return
    missing = app_missing(alias)
    if missing is not None:
        _warned.add(alias)
        logger.warning("%s %s (litetasks.W003)", missing, _ADD_APP)
        if config_error is not None:
            logger.error("%s (litetasks.E005)", config_error)
