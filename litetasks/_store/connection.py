"""Open the queue file: one small function per connection policy, in the apsw style.

Every policy here exists because a queue on SQLite fails without it; the docstrings say why.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import apsw

from ..exceptions import StoreError
from .sharing import connection_bounded_wal, connection_busy_timeout

__all__ = [
    "COMPANION_SUFFIXES",
    "FileIds",
    "MovedCheck",
    "TranslatedErrors",
    "create_private_file",
    "file_ids",
    "immediate",
    "no_checkpoint_on_close",
    "open_connection",
    "real_path",
]

logger = logging.getLogger(__name__)

# How long a process keeps trying when another one holds the file mid-setup.
_OPEN_RETRY_S = 10.0
_OPEN_FLAGS = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_NOFOLLOW


def real_path(path: Path) -> Path:
    """Return the file ``path`` names once every symlink is followed (a dangling one: its target).

    SQLite follows symlinks itself and names the -wal and -shm after the target, beside it; so
    the file litetasks creates private must be that target too, not the link.
    """
    return Path(os.path.realpath(path))


def create_private_file(path: Path, mode: int = 0o600) -> None:
    """Create the queue file with mode 0600 (or ``mode``, whatever the umask) if it does not
    exist yet.

    SQLite gives its -wal and -shm files the main file's permissions, so this covers all three.
    ``path`` must be a real path (``real_path``): a symlink there is refused, never followed,
    so a link swapped in meanwhile cannot make SQLite create the file with the umask's mode.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        if path.is_symlink():
            raise _symlink_error(path) from None
        return
    except FileNotFoundError as exc:
        raise StoreError(
            f"Cannot create the queue file {str(path)!r}: the folder {str(path.parent)!r} does not "
            "exist. Create it, or point OPTIONS['path'] somewhere that exists.",
            path=str(path),
        ) from exc
    except PermissionError as exc:
        raise StoreError(
            f"Cannot create the queue file {str(path)!r}: permission denied. Make the folder "
            "writable by this user, or point OPTIONS['path'] somewhere writable.",
            path=str(path),
        ) from exc
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise StoreError(
                f"Cannot create the queue file {str(path)!r}: the filesystem is read-only.",
                path=str(path),
            ) from exc
        if exc.errno == errno.ELOOP:
            raise _symlink_error(path) from exc
        raise
    try:
        if mode != 0o600:  # a shared file: its mode exactly, not what the umask leaves of it
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _symlink_error(path: Path) -> StoreError:
    return StoreError(
        f"The queue file {str(path)!r} became a symlink while litetasks opened it. Point "
        "OPTIONS['path'] at the file itself, in a folder only this user may write to.",
        path=str(path),
    )


def connection_page_size(connection: apsw.Connection) -> None:
    """Give a new queue file 2 KiB pages (SQLite's default is 4 KiB).

    Every commit copies each page it changed into the WAL; an enqueue changes three (the row,
    the id index, the ready index), so smaller pages write less: a single-row enqueue costs
    20-25 % less SQLite time, and rows up to about 500 bytes of arguments still fit in a page
    without overflow. A file that already has tables keeps its page size (SQLite ignores this).
    """
    connection.execute("PRAGMA page_size = 2048")


def connection_wal(connection: apsw.Connection) -> None:
    """Use WAL so that readers never block the writer and the writer never blocks readers."""
    mode = connection.execute("PRAGMA journal_mode = WAL").get
    if str(mode).lower() != "wal":
        raise StoreError(
            f"The queue file could not be switched to WAL mode (journal_mode={mode!r}). "
            "It must be on a local filesystem that supports shared memory.",
            path=connection.filename,
        )


def connection_writable(connection: apsw.Connection) -> None:
    """Refuse a file this process may only read.

    SQLite quietly opens such a file read-only; every write would then fail, one by one.
    """
    if connection.readonly("main"):
        raise StoreError(
            f"The queue file {connection.filename!r} is read-only for this user; litetasks "
            "needs to write to it. Give this user write permission on it and its folder.",
            path=connection.filename,
        )


class MovedCheck:
    """Whether the file a connection uses was deleted or replaced since it was opened.

    SQLite goes on reading and writing a deleted or moved file without an error: only this
    file control tells (SQLITE_FCNTL_HAS_MOVED). It stats the path SQLite opened and compares
    the inode with the open file's; asked after every enqueue, so the buffer it writes into is
    made once (0.6 µs a call).
    """

    __slots__ = ("_address", "_file_control", "_flag")

    def __init__(self, connection: apsw.Connection) -> None:
        self._flag = ctypes.c_int(0)
        self._address = ctypes.addressof(self._flag)
        self._file_control = connection.file_control

    def __call__(self) -> bool:
        self._file_control("main", apsw.SQLITE_FCNTL_HAS_MOVED, self._address)
        return bool(self._flag.value)


# The files SQLite keeps beside a WAL-mode database, named after it.
COMPANION_SUFFIXES = ("-wal", "-shm")
# (st_dev, st_ino) of the queue file, its -wal and its -shm; None for one that is missing.
FileIds = tuple[tuple[int, int] | None, ...]


def file_ids(path: Path, real: Path) -> FileIds:
    """Return which files are at ``path`` (symlinks followed) and beside ``real``, its target.

    A connection's files are fixed while it is open (SQLite deletes the -wal and -shm only when
    the last connection closes), so a change of these ids means someone else moved, deleted or
    replaced one of them.
    """
    names: list[str | Path] = [path, *(f"{real}{suffix}" for suffix in COMPANION_SUFFIXES)]
    return tuple(_file_id(name) for name in names)


def _file_id(path: str | Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def no_checkpoint_on_close(connection: apsw.Connection) -> None:
    """Make closing ``connection`` leave the WAL alone (it would otherwise checkpoint it).

    For a connection whose -wal or -shm was replaced: the WAL index it would checkpoint by may
    now describe another process's WAL, and copying those frames from its own deleted one would
    write wrong pages into the queue file.
    """
    connection.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)


def _refuse_leftovers(path: Path) -> None:
    """Refuse to create a queue file beside the -wal or -shm of one that was moved or deleted.

    SQLite would delete that -wal (the new file being empty), make a new one, and share the old
    -shm with the processes still using the moved file: its first commit resets the WAL index
    they use, and they then read (and checkpoint into the moved file) pages of the wrong WAL.
    """
    if os.path.lexists(path):
        return
    companions = [f"{path}{suffix}" for suffix in COMPANION_SUFFIXES]
    left = [name for name in companions if os.path.lexists(name)]
    if not left:
        return
    wal, shm = companions
    raise StoreError(
        f"The queue file {str(path)!r} is missing, but {' and '.join(map(repr, left))} "
        f"{'is' if len(left) == 1 else 'are'} still there: it was moved or deleted while in "
        "use, and a new queue file beside them would be mixed with the old one. A running "
        "`litetasks run` saves the old file's tasks and deletes them within seconds; without "
        f"one, stop every process that uses the queue, then delete {wal!r} and {shm!r} (to keep "
        "the moved file's last tasks, rename them after it instead: its name plus -wal and "
        "-shm). See 'When the queue file is damaged' in the README.",
        path=str(path),
    )


def connection_synchronous(connection: apsw.Connection, synchronous: str) -> None:
    """Set durability: NORMAL survives process crashes, FULL also survives power loss.

    In WAL mode NORMAL fsyncs only at checkpoints, so the last commits before a power cut can be
    lost; FULL fsyncs the WAL on every commit, which costs about 0.2-0.3 ms per commit here.
    """
    connection.execute(f"PRAGMA synchronous = {synchronous}")  # validated by config


def connection_tuning(connection: apsw.Connection) -> None:
    """Keep temporary b-trees in memory and give the page cache 16 MiB."""
    connection.execute("PRAGMA temp_store = MEMORY").fetchall()
    connection.execute("PRAGMA cache_size = -16384").fetchall()


def open_connection(
    path: Path, *, synchronous: str, busy_timeout_ms: int, file_mode: int = 0o600
) -> apsw.Connection:
    """Open ``path`` with every policy above applied; create it (mode 0600, or ``file_mode``:
    SQLite gives the -wal and -shm the same) if needed.

    Symlinks are followed first (``real_path``): the file created private is the one SQLite
    uses, and SQLite is told to refuse a symlink met after that (SQLITE_OPEN_NOFOLLOW). Retries
    for a while when another process holds the file while it sets up WAL mode, because that
    step does not go through the busy handler.
    """
    path = real_path(path)
    _refuse_leftovers(path)
    create_private_file(path, file_mode)
    deadline = time.monotonic() + _OPEN_RETRY_S
    while True:
        try:
            return _configured(
                apsw.Connection(str(path), flags=_OPEN_FLAGS), synchronous, busy_timeout_ms
            )
        except apsw.BusyError:
            if time.monotonic() > deadline:
                raise StoreError(
                    f"The queue file {str(path)!r} stayed locked for {_OPEN_RETRY_S:.0f} s while "
                    "opening. Another process holds an exclusive lock on it.",
                    path=str(path),
                ) from None
            time.sleep(0.05)
        except (apsw.CantOpenError, apsw.ReadOnlyError, apsw.IOError, apsw.NotADBError) as exc:
            raise _open_error(path, exc) from exc


def _configured(
    connection: apsw.Connection, synchronous: str, busy_timeout_ms: int
) -> apsw.Connection:
    """``connection`` with every policy above applied, in this order."""
    connection_busy_timeout(connection, busy_timeout_ms)
    connection_writable(connection)
    connection_page_size(connection)
    connection_wal(connection)
    connection_synchronous(connection, synchronous)
    connection_bounded_wal(connection, busy_timeout_ms)
    connection_tuning(connection)
    return connection


def _open_error(path: Path, exc: apsw.Error) -> StoreError:
    """Why the queue file at ``path`` cannot be opened, and what to do."""
    if isinstance(exc, apsw.NotADBError):
        return StoreError(
            f"{str(path)!r} is not a SQLite database (or it is corrupt). Move it aside; "
            "litetasks creates a new queue file on the next start.",
            path=str(path),
        )
    if _is_short_read(exc):
        return StoreError(SHORT_READ.format(path=str(path)), path=str(path))
    return StoreError(
        f"Cannot open the queue file {str(path)!r}: {exc}. Check that it exists, is "
        "writable by this user and sits on a local filesystem.",
        path=str(path),
    )


@contextlib.contextmanager
def immediate(connection: apsw.Connection) -> Iterator[apsw.Connection]:
    """Run the block in one ``BEGIN IMMEDIATE`` transaction; commit, or roll back on error.

    IMMEDIATE takes the write lock up front and goes through the busy handler. A deferred
    transaction that reads and then writes cannot wait: it fails at once with SQLITE_BUSY.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        if not connection.get_autocommit():
            connection.execute("ROLLBACK")
        raise
    else:
        connection.execute("COMMIT")


class TranslatedErrors:
    """Turn apsw errors into ``StoreError``s that say what happened and what to do.

    A context manager with no state of its own: one per store serves every call, from any
    thread, nested or not (a ``@contextmanager`` would build a generator per call, on every
    enqueue).
    """

    __slots__ = ("busy_timeout_ms", "path")

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None or not isinstance(exc, _TRANSLATED):
            return
        path = str(self.path)
        if _is_short_read(exc):
            template = SHORT_READ
        else:
            template = next(text for kinds, text in _MESSAGES if isinstance(exc, kinds))
        message = template.format(path=path, busy_timeout_ms=self.busy_timeout_ms, error=exc)
        raise StoreError(message, path=path) from exc


def _is_short_read(exc: BaseException) -> bool:
    return (
        isinstance(exc, apsw.IOError)
        and getattr(exc, "extendedresult", None) == apsw.SQLITE_IOERR_SHORT_READ
    )


# A connection opened after the -wal was deleted under others finds a new, empty -wal and the
# old WAL index (-shm), which promises frames the new -wal lacks: every read is a short read
# ("disk I/O error"), until the old connections have checkpointed their deleted -wal; after
# that its commits would overwrite theirs. A truncated queue file reads short too.
SHORT_READ = (
    "The queue file {path!r} or its -wal was deleted, truncated or replaced while other "
    "processes had it open: SQLite reads less than the WAL index (-shm) promises, and nothing "
    "was written. Stop every process that uses the queue (web processes too), then start them "
    "again; see 'When the queue file is damaged' in the README."
)

# What went wrong with the queue file, and what to do about it; {path!r} is the file.
_MESSAGES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (
        apsw.BusyError,
        "The queue file {path!r} stayed locked by another connection for more than "
        "busy_timeout_ms={busy_timeout_ms}. Shorten long transactions on it, or raise "
        "OPTIONS['busy_timeout_ms'].",
    ),
    (
        apsw.FullError,
        "The disk holding {path!r} is full; nothing was written. Free space, or delete old "
        "finished results from the queue file.",
    ),
    (
        apsw.ReadOnlyError,
        "The queue file {path!r} is read-only; nothing was written. Give this user write "
        "permission on it and its folder.",
    ),
    (
        (apsw.CorruptError, apsw.NotADBError),
        "The queue file {path!r} is corrupt ({error}). Stop the workers, move the file aside "
        "and keep it for inspection; a new one is created on start.",
    ),
    (
        apsw.TooBigError,
        "A value is too big for the queue file {path!r} ({error}); nothing was written. Keep "
        "large data elsewhere (a file, the app database) and pass its id or path instead.",
    ),
    (
        apsw.ConstraintError,
        "A job with the same id is already in {path!r}; nothing was written. Job ids must be "
        "unique ({error}).",
    ),
    ((apsw.IOError, apsw.CantOpenError), "Input/output error on the queue file {path!r}: {error}."),
)
_TRANSLATED = tuple(
    kind for kinds, _ in _MESSAGES for kind in (kinds if isinstance(kinds, tuple) else (kinds,))
)
