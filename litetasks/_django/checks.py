"""Django system checks of a backend's queue file: a place where it cannot work, or is unsafe."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from django.core import checks

from .._store.doorbell import doorbell_folder_problem, doorbell_path
from .._store.filesystems import filesystem_type

__all__ = ["queue_file_checks"]


def queue_file_checks(path: Path, alias: str) -> Iterator[checks.CheckMessage]:
    """Report a queue file that cannot work: unwritable folder, network filesystem."""
    folder = path.parent
    where = f"TASKS[{alias!r}]"
    if not folder.is_dir():
        yield checks.Error(
            f"The folder of the queue file {str(path)!r} does not exist.",
            hint=f"Create {str(folder)!r}, or set {where}['OPTIONS']['path'].",
            id="litetasks.E001",
        )
        return
    if path.is_dir():
        yield checks.Error(
            f"The queue file path {str(path)!r} is a directory.",
            hint=f"Set {where}['OPTIONS']['path'] to a file path inside it, such as "
            f"{str(path / 'tasks.sqlite3')!r}.",
            id="litetasks.E004",
        )
        return
    yield from _check_writable(path, where)
    yield from _check_private(path, where)


def _check_writable(path: Path, where: str) -> Iterator[checks.CheckMessage]:
    folder = path.parent
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        yield checks.Error(
            f"The queue file {str(path)!r} or its folder is not writable by this user.",
            hint="SQLite writes the -wal and -shm files beside it: make the folder writable, "
            f"or set {where}['OPTIONS']['path'] to a writable place.",
            id="litetasks.E002",
        )
    fstype = filesystem_type(folder)
    if fstype is not None:
        yield checks.Error(
            f"The queue file {str(path)!r} is on a network filesystem ({fstype}).",
            hint="SQLite locking is unreliable there and the queue can corrupt. Put the queue "
            f"file on a local disk ({where}['OPTIONS']['path']).",
            id="litetasks.E003",
        )


def _check_private(path: Path, where: str) -> Iterator[checks.CheckMessage]:
    """Warn about folders where another user could plant files beside the queue file."""
    folder = Path(os.path.realpath(path)).parent
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & stat.S_IWOTH:
        yield checks.Warning(
            f"The folder of the queue file {str(path)!r} is writable by every user "
            f"(mode {mode:04o}).",
            hint="Another user could put their own -wal, -shm or a symlink there before "
            "litetasks creates them, and so read or redirect the queue. Remove write permission "
            f"for others (chmod o-w {str(folder)!r}), or set {where}['OPTIONS']['path'] to a "
            "private folder.",
            id="litetasks.W001",
        )
    bell_folder = doorbell_path(path).parent
    problem = doorbell_folder_problem(bell_folder)
    if problem is not None:
        yield checks.Warning(
            problem,
            hint=f"Delete {str(bell_folder)!r}: litetasks creates it again, private. Until then "
            "idle workers find new tasks only at their poll interval.",
            id="litetasks.W002",
        )


from . import options_checks  # noqa: E402, F401  registers litetasks.W010-W014
