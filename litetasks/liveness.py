"""Tell a live worker process from a dead one: the pid, plus its start time on this boot.

On one host, a worker whose pid still runs with the same start time is alive whatever its
heartbeat says (a heartbeat can be late when the queue file is busy). A pid alone is not enough:
pids are reused, above all after a reboot.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessIdentity", "classify_workers", "is_same_process_alive", "this_process"]


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    host: str
    boot_id: str
    pid: int
    proc_start: int


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """Return the start time of ``pid`` in clock ticks since boot, or None if it is gone.

    A zombie is gone: it has exited and only waits to be reaped, which can take a while (an
    init that reaps slowly, or never, as some container entry points do).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):  # field 3, the state: zombie or dead
        return None
    return int(fields[19])  # field 22 of the whole line


def this_process() -> ProcessIdentity:
    """Return the identity of the calling process."""
    pid = os.getpid()
    return ProcessIdentity(
        host=socket.gethostname(), boot_id=_boot_id(), pid=pid, proc_start=process_start(pid) or 0
    )


def is_same_process_alive(pid: int, proc_start: int) -> bool:
    """Return whether ``pid`` runs and is the process that started at ``proc_start``."""
    if not proc_start:
        return False
    return process_start(pid) == proc_start


def classify_workers(
    workers: list[tuple[str, str, str, int, int]], here: ProcessIdentity
) -> tuple[list[str], list[str]]:
    """Split ``(worker_id, host, boot_id, pid, proc_start)`` rows into ``(dead, alive)`` ids.

    Only workers on this host and boot can be judged; the others are in neither list and are
    judged by their heartbeat alone.
    """
    dead: list[str] = []
    alive: list[str] = []
    for worker_id, host, boot_id, pid, proc_start in workers:
        if host != here.host or not boot_id or boot_id != here.boot_id:
            continue
        (alive if is_same_process_alive(pid, proc_start) else dead).append(worker_id)
    return dead, alive
