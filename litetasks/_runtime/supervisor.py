"""Own the worker processes: fork them, restart the dead, recover their tasks, stop them cleanly.

``Supervisor`` is what ``litetasks run`` runs. The parent stays single-threaded (forking a
threaded process can deadlock the child) and holds no SQLite connection across ``fork()``:
each child opens its own. Signal handlers only set flags and write to a wake-up pipe; the
main loop does the work.

What runs inside one worker process (``build_pool``, ``run_pool``, the exit codes) is in
``workerprocess.py``; it is re-exported here, where the callers have always found it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

from .._django.periodic import Schedule, load_schedules
from .._store.config import WorkerConfig
from .._store.damage import Damage, find_damage, stop_message
from .._store.outage import Outage, is_damage
from ..exceptions import StoreError
from .recovery import recover_lost
from .restarts import RestartLimit
from .scheduler import Scheduler
from .workerprocess import (
    EXIT_DAMAGED,
    EXIT_RECYCLE,
    EXIT_STORE_FAILED,
    STOP_SIGNALS,
    build_pool,
    child_main,
    new_worker_id,
    run_pool,
    set_process_title,
)

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend

__all__ = [
    "EXIT_DAMAGED",
    "EXIT_RECYCLE",
    "EXIT_STORE_FAILED",
    "Supervisor",
    "build_pool",
    "new_worker_id",
    "run_pool",
]

logger = logging.getLogger(__name__)

# A burst does not restart a worker that keeps failing forever: it ends, exit code 1.
_MAX_BURST_RESTARTS = 3
# The --reload watcher (and ``litetasks bench``) name themselves to the supervisor they start.
_WATCHER_PID_VAR = "LITETASKS_PARENT_PID"


@dataclass
class _Child:
    worker_id: str
    started: float
    restarts: int = 0


@dataclass
class _Slots:
    """What the supervisor knows of its children: pid -> child, and restart schedule."""

    by_pid: dict[int, _Child] = field(default_factory=dict)
    pending: list[tuple[float, int]] = field(default_factory=list)  # (when, restarts)


class Supervisor:
    """Fork ``config.process_count`` worker processes and keep them running until stopped."""

    def __init__(
        self,
        backend: SQLiteBackend,
        config: WorkerConfig,
        schedules: Mapping[str, Schedule] | None = None,
    ) -> None:
        self.backend = backend
        self.config = config
        self.slots = _Slots()
        # Periodic tasks: enqueued by this loop (never in a burst, which only drains).
        if config.burst:
            schedules = {}
        elif schedules is None:
            schedules = load_schedules(backend)
        self.scheduler = Scheduler(backend, schedules)
        self._next_periodic = 0.0 if schedules else math.inf
        self._restarts = RestartLimit(budget=config.process_count + 2)
        self._watcher_pid = _take_watcher_pid()
        self._signals = 0
        self._stop_signal = 0  # the signal that stopped the pool (0: none, or not a signal)
        self._forwarded = 0
        self._damage: Damage | None = None
        self._unrecorded = False  # a child stopped with outcomes it could not record
        self._recovery = Outage("Recovering the tasks of lost workers")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)

    @property
    def stop_requested(self) -> bool:
        """Whether a signal (or the --reload watcher's death) asked ``run()`` to stop."""
        return self._signals > 0

    # -- main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT/SIGHUP (twice: at once) or, in burst mode, until
        drained.

        As PID 1 (a container's entry point) it also does init's job: it reaps every process
        handed to it, and its signals work because it has a handler for each.
        """
        self._begin()
        failed = False
        next_sweep = time.monotonic() + self.config.lease_s / 4
        while self.slots.by_pid or (self.slots.pending and not self._signals):
            self._wait(self._next_timeout(next_sweep))
            if not self._signals and self._watcher_gone():
                logger.warning("The --reload watcher died; stopping")
                self._signals = 1
            if not self._signals:
                self._check_queue_file()
            failed |= self._reap()
            if self._signals == 1 and not self._forwarded:
                self._forwarded = 1
                logger.info(
                    "Stopping%s: running tasks get %.0f s to finish",
                    f" on {signal.Signals(self._stop_signal).name}" if self._stop_signal else "",
                    self.config.grace_s,
                )
                self._forward(signal.SIGTERM)
            elif self._signals > 1:
                logger.warning("Second signal: stopping at once")
                self._kill_children()
                return 1
            self._start_due()
            if not self._signals and time.monotonic() >= self._next_periodic:
                # Just after the slot, not before it (the wall clock and monotonic differ).
                self._next_periodic = time.monotonic() + self.scheduler.tick() + 0.002
            if time.monotonic() >= next_sweep:
                self._recover(())
                next_sweep = time.monotonic() + self.config.lease_s / 4
        logger.info("Supervisor pid=%d stopped", os.getpid())
        return self._final_code(failed)

    def _begin(self) -> None:
        """Take the signals, name the process, recover lost workers, start the workers."""
        self._install_signals()
        set_process_title(
            f"litetasks supervisor [{self.config.process_count} processes, "
            f"{self.config.threads} threads each] {self.backend.config.store.path}",
            "lt-supervisor",
        )
        self._close_django_connections()
        self._recover(())
        logger.info(
            "Starting supervisor pid=%d path=%s processes=%d threads=%d queues=%s",
            os.getpid(),
            self.backend.config.store.path,
            self.config.process_count,
            self.config.threads,
            ",".join(self.config.queues or ("*",)),
        )
        for _ in range(self.config.process_count):
            self._spawn(restarts=0)

    def _final_code(self, failed: bool) -> int:
        if self._damage is not None:
            logger.error("%s", stop_message(self._damage, self.backend.store))
            return 1
        if self._unrecorded:
            logger.error(
                "Stopped without recording the outcome of some tasks: the queue file failed "
                "(see above). They are recovered as lost (WorkerLost) once it works again."
            )
            return 1
        return 1 if failed and self.config.burst else 0

    def _check_queue_file(self) -> None:
        try:
            damage = find_damage(self.backend.store)
        except StoreError as exc:
            damage = Damage(reason=str(exc)) if is_damage(exc) else None
        if damage is not None:
            self._stop_for(damage)

    def _stop_for(self, damage: Damage) -> None:
        """Stop the pool (as on SIGTERM: running tasks get their grace period), then exit 1."""
        if self._damage is None:
            self._damage = damage
            logger.error("%s Stopping the pool.", damage.reason)
        self._signals = max(self._signals, 1)

    def _next_timeout(self, next_sweep: float) -> float:
        now = time.monotonic()
        timeout = max(0.0, min(next_sweep, self._next_periodic) - now)
        for when, _ in self.slots.pending:
            timeout = min(timeout, max(0.0, when - now))
        return min(timeout, 1.0)

    def _wait(self, timeout: float) -> None:
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    # -- children ----------------------------------------------------------------------------

    def _spawn(self, restarts: int) -> None:
        worker_id = new_worker_id() + f"/{len(self.slots.by_pid)}-{restarts}"
        supervisor = os.getpid()
        # A stop signal must wait until the child has its own handlers: until then it has ours,
        # which would count the signal in the child's copy of this object, and the child would
        # never stop. Blocked signals stay pending and are delivered once unblocked.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:  # the child: never returns
                wake = (self._wake_r, self._wake_w)
                os._exit(child_main(self.backend, self.config, worker_id, mask, supervisor, wake))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.slots.by_pid[pid] = _Child(worker_id, time.monotonic(), restarts)

    def _reap(self) -> bool:
        """Collect dead children, recover their tasks, schedule replacements; True on failure."""
        failed = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return failed
            if pid == 0:
                return failed
            child = self.slots.by_pid.pop(pid, None)
            if child is None:  # an orphan handed to us (we are PID 1 or a subreaper): reaped
                continue
            code = os.waitstatus_to_exitcode(status)
            failed |= code not in (0, EXIT_RECYCLE)
            self._after_exit(child, pid, code)

    def _after_exit(self, child: _Child, pid: int, code: int) -> None:
        self._recover_tasks(child, code)
        if self._signals or (code == 0 and self.config.burst):
            return
        if self.config.burst and child.restarts >= _MAX_BURST_RESTARTS:
            logger.error("Worker pid=%d failed %d times in a burst; giving up", pid, child.restarts)
            return
        now = time.monotonic()
        crashed = code not in (EXIT_RECYCLE, 0)
        when, crashes = self._restarts.plan(
            now,
            pid=pid,
            code=code,
            lived_s=now - child.started,
            crashes=child.restarts if crashed else None,
        )
        if not crashed and when <= now:
            logger.info("Worker pid=%d %s; starting a new one", pid, _ended(code))
        self.slots.pending.append((when, crashes))

    def _recover_tasks(self, child: _Child, code: int) -> None:
        """Put a dead child's tasks back to READY when it stopped as asked, else recover them."""
        try:
            store = self.backend.store
            if code in (EXIT_STORE_FAILED, EXIT_DAMAGED):
                self._recover((child.worker_id,))  # they may have run: lost, not put back
            elif self._signals:
                released = store.unregister_worker(child.worker_id)  # stopping: not an attempt
                if released:
                    logger.warning("Put back to READY after shutdown: %s", ", ".join(released))
            elif code not in (0, EXIT_RECYCLE):
                self._recover((child.worker_id,))
        except StoreError as exc:
            logger.error("Could not recover the tasks of worker %s: %s", child.worker_id, exc)
        if code == EXIT_DAMAGED:
            path = self.backend.config.store.path
            self._stop_for(Damage(reason=f"A worker found the queue file {str(path)!r} damaged."))
        self._unrecorded |= code == EXIT_STORE_FAILED and bool(self._signals)

    def _start_due(self) -> None:
        if self._signals:
            self.slots.pending.clear()
            return
        now = time.monotonic()
        due = [entry for entry in self.slots.pending if entry[0] <= now]
        self.slots.pending = [entry for entry in self.slots.pending if entry[0] > now]
        for _, restarts in due:
            self._spawn(restarts)

    def _recover(self, dead: tuple[str, ...]) -> None:
        try:
            recover_lost(self.backend.store, self.config.lease_s, known_dead=dead)
        except StoreError as exc:
            self._recovery.failed(exc)  # retried at the next sweep
            if is_damage(exc):
                self._stop_for(Damage(reason=str(exc)))
        else:
            self._recovery.recovered()

    def _forward(self, signum: int) -> None:
        for pid in self.slots.by_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _kill_children(self) -> None:
        for pid in list(self.slots.by_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid, child in list(self.slots.by_pid.items()):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self._after_exit(child, pid, -signal.SIGKILL)
        self.slots.by_pid.clear()

    # -- signals -----------------------------------------------------------------------------

    def _install_signals(self) -> None:
        # Every signal the supervisor relies on has a handler: as PID 1 of a PID namespace (a
        # container's entry point), the kernel drops signals that would take the default action.
        def on_stop(signum: int, frame: FrameType | None) -> None:
            # The main loop reacts; nothing else is safe here.
            if signum == signal.SIGHUP and self._signals:
                return  # a repeated SIGHUP: see STOP_SIGNALS
            self._signals += 1
            self._stop_signal = self._stop_signal or signum

        for signum in STOP_SIGNALS:
            signal.signal(signum, on_stop)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _watcher_gone(self) -> bool:
        """Whether ``litetasks run --reload`` started us and has died since."""
        return self._watcher_pid is not None and os.getppid() != self._watcher_pid

    def _close_django_connections(self) -> None:
        from django.db import connections

        connections.close_all()


def _ended(code: int) -> str:
    return "recycled" if code == EXIT_RECYCLE else "stopped"


def _take_watcher_pid() -> int | None:
    """Return the pid of the process watching us (``--reload``), if one started us.

    It leaves the environment, so that no subprocess of a task (another ``litetasks run``
    among them) takes our watcher for its own, and stops when it finds another parent.
    """
    value = os.environ.pop(_WATCHER_PID_VAR, "")
    return int(value) if value.isdigit() else None
