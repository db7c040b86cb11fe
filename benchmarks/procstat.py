"""Read CPU time and memory of a process tree from ``/proc`` (Linux only), and reap with rusage."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Reaped",
    "peak_rss_kb",
    "process_tree",
    "reap",
    "stop",
    "tree_cpu_s",
]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reaped:
    """How a child process ended."""

    returncode: int
    max_rss_kb: int  # the largest RSS of the child and every descendant it waited for
    timed_out: bool


def process_tree(root: int) -> list[int]:
    """Return ``root`` and its live descendants, parents first."""
    found = [root]
    index = 0
    while index < len(found):
        found.extend(_children(found[index]))
        index += 1
    return found


def _children(pid: int) -> list[int]:
    pids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            pids.extend(int(item) for item in text.split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return pids


def tree_cpu_s(root: int) -> float:
    """Return the CPU seconds used so far by ``root``'s tree.

    Live threads are read from ``schedstat`` (nanoseconds: a 10 s idle window resolves 0.001 %
    of a core, where clock ticks would only resolve 0.1 %). Descendants that already exited
    count through their parent's ``cutime``/``cstime`` (clock ticks). A thread that exits during
    a window takes its time with it; idle workers do not start and stop threads.
    """
    total = 0.0
    for pid in process_tree(root):
        total += _threads_cpu_s(pid) + _reaped_children_cpu_s(pid)
    return total


def _threads_cpu_s(pid: int) -> float:
    ns = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            ns += int((task / "schedstat").read_text().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return ns / 1e9


def _reaped_children_cpu_s(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # Fields after the command name, which may itself hold spaces and parentheses.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[13]) + int(fields[14])) / _CLOCK_TICKS  # cutime, cstime


def peak_rss_kb(root: int) -> int:
    """Return the largest ``VmHWM`` (peak resident set) among ``root``'s live tree, in KiB."""
    peak = 0
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak


def reap(proc: subprocess.Popen[bytes], timeout_s: float) -> Reaped:
    """Wait for ``proc`` with ``wait4`` (which reports its peak RSS); kill its group on timeout.

    ``proc`` must have been started with ``start_new_session=True``.
    """
    deadline = time.monotonic() + timeout_s
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline and not timed_out:
            timed_out = True
            _kill_group(proc.pid)
            deadline = time.monotonic() + 10.0
        time.sleep(0.005)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Reaped(returncode=proc.returncode, max_rss_kb=usage.ru_maxrss, timed_out=timed_out)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> Reaped:
    """Send SIGTERM to ``proc`` and reap it (SIGKILL to its group after ``timeout_s``)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    return reap(proc, timeout_s)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
