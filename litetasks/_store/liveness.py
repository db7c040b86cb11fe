"""Tell a live worker process from a dead one: by its pid where we can, else by its heartbeat.

A worker's pid means something only to processes that see the same pids: the same kernel boot
(``boot_id``), host and PID namespace, the *liveness domain*. Within one domain, a worker whose
pid still runs with the same start time is alive whatever its heartbeat says (a heartbeat can be
late when the queue file is busy), and one whose pid is gone is dead at once. A pid alone is not
enough: pids are reused, above all after a reboot. Containers on one host share the hostname and
boot id when they share a pod (Kubernetes) or ``--uts=host``, yet each has pids of its own: pid 7
over there is not pid 7 here, so a worker of another domain is judged by its heartbeat alone, as a
worker on another host is.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .records import WorkerRecord

__all__ = [
    "ProcessIdentity",
    "classify_workers",
    "is_same_process_alive",
    "pid_namespace",
    "process_start",
    "same_domain",
    "this_process",
]


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    host: str
    boot_id: str
    pid: int
    proc_start: int
    # The PID namespace whose pids this process's /proc shows ("pid:[4026531836]"); empty when
    # unknown (no /proc, or a /proc of another namespace): its pids are then judged by no one.
    pid_namespace: str = ""

    def worker(
        self, worker_id: str, queues: tuple[str, ...] | None, now_us: int, *, threads: int
    ) -> WorkerRecord:
        """The row of a worker running ``threads`` executor threads in this process, started
        and heard from at ``now_us``."""
        return WorkerRecord(
            worker_id=worker_id,
            pid=self.pid,
            host=self.host,
            boot_id=self.boot_id,
            proc_start=self.proc_start,
            pid_namespace=self.pid_namespace,
            queues=queues,
            threads=threads,
            started_at_us=now_us,
            heartbeat_at_us=now_us,
        )


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    """Return the PID namespace of this process, or "" if ``/proc`` does not show its pids.

    ``/proc`` shows the pids of the namespace it was mounted in: a container that kept its
    host's ``/proc`` (``unshare --pid`` without ``--mount-proc``) would read other processes
    under its own pids, so it judges no pid at all.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid")
        seen_as = int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return ""
    return namespace if seen_as == os.getpid() else ""


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
    namespace = pid_namespace()
    return ProcessIdentity(
        host=socket.gethostname(),
        boot_id=_boot_id(),
        pid=pid,
        proc_start=(process_start(pid) or 0) if namespace else 0,
        pid_namespace=namespace,
    )


def is_same_process_alive(pid: int, proc_start: int) -> bool:
    """Return whether ``pid`` runs and is the process that started at ``proc_start``."""
    if not proc_start:
        return False
    return process_start(pid) == proc_start


def same_domain(worker: WorkerRecord, here: ProcessIdentity) -> bool:
    """Whether ``here`` can judge ``worker`` by its pid: same host, boot and PID namespace.

    A row without a namespace (registered before schema version 3, or by a process that could
    not tell its own) is in no one's domain: the same pid and start time can exist in two
    namespaces.
    """
    if not (here.pid_namespace and here.boot_id):
        return False
    return (worker.host, worker.boot_id, worker.pid_namespace) == (
        here.host,
        here.boot_id,
        here.pid_namespace,
    )


def classify_workers(
    workers: Iterable[WorkerRecord], here: ProcessIdentity
) -> tuple[list[str], list[str]]:
    """Split workers into ``(dead, alive)`` ids, judging by pid those of ``here``'s domain.

    The others are in neither list and are judged by their heartbeat alone.
    """
    dead: list[str] = []
    alive: list[str] = []
    for worker in workers:
        if same_domain(worker, here):
            is_alive = is_same_process_alive(worker.pid, worker.proc_start)
            (alive if is_alive else dead).append(worker.worker_id)
    return dead, alive
