"""Where the queue file lives: the mount that holds it, and whether its locks can be trusted.

SQLite's locking relies on POSIX advisory locks, which network filesystems do not honour
reliably; the system checks warn about a queue file on one (``_django/checks.py``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NETWORK_FILESYSTEMS", "filesystem_type", "mount_of"]

# Filesystem types (as /proc/self/mountinfo names them) whose locks SQLite cannot trust.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb",
        "smb3",
        "smbfs",
        "ncpfs",
        "9p",
        "afs",
        "coda",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "davfs",
        "fuse.sshfs",
        "fuse.rclone",
        "fuse.s3fs",
    }
)

# The kernel's table of this process's mounts (proc(5)); tests pass a fake one.
_MOUNTINFO = Path("/proc/self/mountinfo")


def mount_of(path: Path, mountinfo: Path = _MOUNTINFO) -> tuple[str, str] | None:
    """Return ``(filesystem type, source)`` of the mount holding ``path``; None if unknown.

    Finds the longest mount point containing ``path`` in ``mountinfo`` (Linux, WSL).
    """
    directory = path if path.is_dir() else path.parent
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    best: tuple[int, str, str] | None = None
    resolved = str(directory.resolve())
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, described = left.split(), right.split()
        if len(fields) < 5 or len(described) < 2:
            continue
        mount_point = fields[4].replace("\\040", " ")
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) > best[0]):
            best = (len(mount_point), described[0], described[1])
    return None if best is None else (best[1], best[2])


def filesystem_type(path: Path, mountinfo: Path = _MOUNTINFO) -> str | None:
    """Return the type of the network filesystem holding ``path``, or None for a local one.

    A 9p mount is how WSL exposes Windows drives (``/mnt/c``).
    """
    mount = mount_of(path, mountinfo)
    return mount[0] if mount is not None and mount[0] in NETWORK_FILESYSTEMS else None
