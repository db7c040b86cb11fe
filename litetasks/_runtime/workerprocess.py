"""One worker process: its thread pool, its signals, its exit code.

A worker process runs a ``WorkerPool`` (threads) until a stop signal, a burst's end or a limit
(tasks, memory) ends it, and tells how it ended by its exit code (``EXIT_*``), which the
supervisor acts on. ``child_main`` is the body of a process the supervisor forked;
``run_pool`` runs the same pool in the calling process (no supervisor).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
from collections.abc import Iterable
from types import FrameType
from typing import TYPE_CHECKING

from .._store.config import WorkerConfig
from .._store.liveness import this_process
from .._store.outage import is_damage
from ..exceptions import StoreError
from .execution import TaskRunner
from .pool import WorkerPool

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend

__all__ = [
    "EXIT_DAMAGED",
    "EXIT_RECYCLE",
    "EXIT_STORE_FAILED",
    "STOP_SIGNALS",
    "build_pool",
    "child_main",
    "new_worker_id",
    "run_pool",
    "set_process_title",
]

logger = logging.getLogger(__name__)

EXIT_RECYCLE = 75  # a child that reached its task or memory limit; replace it at once
# A child the queue file failed: its tasks may have run, so they are recovered as lost (never put
# back to READY as if they had not started); it is restarted with back-off.
EXIT_STORE_FAILED = 73
# A child that found the queue file damaged (corrupt, not a database): the whole pool stops.
EXIT_DAMAGED = 74
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
# SIGHUP (a closing terminal, or a hang-up sent by hand) stops the pool as SIGTERM does, but a
# second SIGHUP does not force the stop as a second SIGTERM or SIGINT does: a closing terminal
# can send two (the shell passes its own on to its jobs, the kernel sends one to the foreground).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def new_worker_id() -> str:
    """Return an id naming this process: ``host:pid:random``."""
    identity = this_process()
    return f"{identity.host}:{identity.pid}:{os.urandom(3).hex()}"


def build_pool(
    backend: SQLiteBackend,
    config: WorkerConfig,
    worker_id: str | None = None,
    *,
    can_exit: bool = False,
    parent_pid: int | None = None,
) -> WorkerPool:
    """Return a thread pool serving ``backend`` in this process.

    ``can_exit``: this process is a supervised worker, which may exit to get rid of a task
    that ignores its timeout or cancellation (the supervisor replaces it). ``parent_pid``: the
    process whose exit stops the pool (its supervisor; by default this process's parent).
    """
    return WorkerPool(
        store_factory=lambda: backend.store,
        runner_factory=lambda wid, translate: TaskRunner(backend, wid, translate=translate),
        config=config,
        worker_id=worker_id or new_worker_id(),
        can_exit=can_exit,
        parent_pid=parent_pid,
    )


def set_process_title(title: str, short: str) -> None:
    """Show what this process is in ps and top.

    With the optional ``setproctitle`` package the whole command line becomes ``title``;
    without it, Linux's 15-character process name (``ps -o comm``, top) becomes ``short``.
    """
    try:
        import setproctitle  # type: ignore[import-not-found]

        setproctitle.setproctitle(title)
    except ImportError:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_NAME, short.encode()[:15], 0, 0, 0)


def run_pool(backend: SQLiteBackend, config: WorkerConfig) -> int:
    """Run threads in this process until SIGTERM/SIGINT/SIGHUP (or a burst ends); return the
    exit code.

    The first signal stops claiming and lets running tasks finish within ``grace_s``; a second
    one (not a second SIGHUP) exits at once (the next pool to start recovers what was running).
    """
    pool = build_pool(backend, config)
    if threading.current_thread() is threading.main_thread():
        _install_child_signals(pool)
    pool.run()
    return _exit_code(pool)


def _install_child_signals(pool: WorkerPool) -> None:
    seen = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Flags only: the pool's dispatcher does the work (puts running tasks back, exits).
        nonlocal seen
        if signum == signal.SIGHUP and seen:
            return  # a repeated SIGHUP: see STOP_SIGNALS
        seen += 1
        pool.stop(force=seen > 1)

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)


def _exit_code(pool: WorkerPool) -> int:
    if pool.is_damaged:
        return EXIT_DAMAGED
    if pool.unrecorded or pool.store_failure is not None:
        return EXIT_STORE_FAILED
    if pool.failure is not None:
        return 1
    if pool.must_be_replaced:  # a task ignored its interrupt: a fresh process takes over
        return EXIT_RECYCLE
    if pool.was_forced:
        return 1
    return EXIT_RECYCLE if pool.recycled else 0


def child_main(
    backend: SQLiteBackend,
    config: WorkerConfig,
    worker_id: str,
    mask: Iterable[int],
    supervisor: int,
    close: Iterable[int] = (),
) -> int:
    """Run a worker process the supervisor (pid ``supervisor``) just forked; return its exit
    code. ``mask`` is the signal mask to restore once the pool's own handlers are in place;
    ``close`` are the supervisor's file descriptors (its wake-up pipe), closed first."""
    code = 1
    try:
        for fd in close:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # Our own process group: a terminal's Ctrl-C reaches only the supervisor, which
        # forwards one SIGTERM; otherwise each child would count two signals and not wait.
        os.setpgid(0, 0)
        _die_with_parent(supervisor)
        set_process_title(f"litetasks worker {worker_id}", "lt-worker")
        pool = build_pool(backend, config, worker_id, can_exit=True, parent_pid=supervisor)
        _install_child_signals(pool)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        pool.run()
        code = _exit_code(pool)
    except StoreError as exc:  # the queue file cannot be opened or written at start
        logger.error("Worker %s cannot start: %s", worker_id, exc)
        code = EXIT_DAMAGED if is_damage(exc) else EXIT_STORE_FAILED
    except BaseException:
        logger.exception("Worker process %s crashed", worker_id)
    finally:
        logging.shutdown()
    return code


def _die_with_parent(supervisor: int) -> None:
    """Ask Linux to send SIGTERM when the supervisor dies, even by SIGKILL (no orphans).

    The supervisor is known by its pid, not as "a parent that is not PID 1": as a container's
    entry point the supervisor *is* PID 1 (and when it dies, the kernel ends its namespace).
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    if os.getppid() != supervisor:  # it died before prctl took effect: we were handed over
        os.kill(os.getpid(), signal.SIGTERM)
