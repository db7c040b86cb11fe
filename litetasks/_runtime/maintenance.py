"""The maintenance thread of a worker pool: heartbeats, recovery, pruning, checkpoints.

Every ``heartbeat_s`` it heartbeats (registering again if the worker was declared lost),
recovers the tasks of lost workers every quarter lease, prunes old results, and checkpoints the
WAL fully once the pool is idle after work. Each second with new outcomes it also checkpoints
while others write (``Store.checkpoint_restart``), so that commits do not have to. It stops the
pool when the process that supervises it exits. A failing queue file pauses it with back-off
(``Outage``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .._store.config import WorkerConfig
from .._store.outage import Outage
from .._store.store import Store
from ..exceptions import StoreError
from .janitor import Pruner

__all__ = ["Maintenance"]

logger = logging.getLogger(__name__)

# The thread looks at least this often (seconds) for new outcomes and a dead supervisor.
_TICK_MAX_S = 1.0


class Maintenance:
    """Heartbeats and housekeeping of one pool; ``tick()`` does one round, ``run()`` loops.

    ``register(store)`` registers the worker again; ``recover(store)`` recovers lost workers'
    tasks; ``supervisor_alive()`` says whether the process to serve still runs.
    """

    def __init__(
        self,
        *,
        worker_id: str,
        config: WorkerConfig,
        register: Callable[[Store], None],
        recover: Callable[[Store], object],
        supervisor_alive: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker_id = worker_id
        self.heartbeat_s = config.heartbeat_s
        self.recovery_s = config.lease_s / 4
        self.pruner = Pruner(config.results_ttl_s)
        self._register = register
        self._recover = recover
        self._supervisor_alive = supervisor_alive
        self._clock = clock
        self._outage = Outage(f"Heartbeat of worker id={worker_id}", clock=clock)
        # Guards _wrote, _dirty and _idle: the dispatcher sets them, this thread clears them.
        self._lock = threading.Lock()
        self._wrote = False  # outcomes recorded since the last checkpoint_restart()
        self._dirty = False  # outcomes recorded since the last full checkpoint
        self._idle = False  # the dispatcher found nothing to do since the last one
        # Read and written by the maintenance thread only.
        self._next_heartbeat = 0.0
        self._next_recovery = clock() + self.recovery_s

    def wrote(self) -> None:
        """Outcomes were recorded (on the dispatcher's or an executor's thread)."""
        with self._lock:
            self._wrote = self._dirty = True

    def idle(self) -> None:
        """The pool has nothing to do (on the dispatcher's thread)."""
        with self._lock:
            self._idle = True

    def run(
        self, store: Store, wait_for_stop: Callable[[float], bool], stop: Callable[[], None]
    ) -> None:
        """Tick until ``wait_for_stop(seconds)`` says the pool stops, or call ``stop()`` once
        the supervisor is gone."""
        while not wait_for_stop(min(self.heartbeat_s, _TICK_MAX_S)):
            if not self.tick(store):
                logger.warning("The supervisor died; worker id=%s stops", self.worker_id)
                stop()
                return

    def tick(self, store: Store) -> bool:
        """One round of maintenance; False when the supervisor is gone (the pool must stop)."""
        if not self._supervisor_alive():
            return False
        with self._lock:
            wrote, self._wrote = self._wrote, False
        if wrote:
            self.checkpoint_restart(store)
        now = self._clock()
        if now < self._next_heartbeat:
            return True
        self._next_heartbeat = now + self.heartbeat_s
        try:
            self._beat(store, now)
        except StoreError as exc:
            # Retried at the next heartbeat: the dispatcher backs off and decides to stop.
            self._next_heartbeat = self._clock() + self._outage.failed(exc)
        else:
            self._outage.recovered()
        return True

    def _beat(self, store: Store, now: float) -> None:
        if not store.heartbeat(self.worker_id):
            logger.warning("Worker id=%s was declared lost; registering again", self.worker_id)
            self._register(store)
        if now >= self._next_recovery:
            self._recover(store)
            self._next_recovery = self._clock() + self.recovery_s
        self.pruner.tick(store)
        with self._lock:
            due = self._idle and self._dirty
            if due:
                self._idle = self._dirty = False
        if due:
            self.checkpoint(store)

    def checkpoint_restart(self, store: Store) -> None:
        """Checkpoint from this thread each second of work, so that commits do not have to."""
        try:
            store.checkpoint_restart()
        except StoreError as exc:  # another checkpoint runs; a failing file is reported by
            logger.debug("Checkpoint skipped: %s", exc)  # the dispatcher and heartbeat

    def checkpoint(self, store: Store) -> None:
        """Copy the whole WAL into the file and truncate it; warn if a reader blocks that."""
        frames, done = store.checkpoint()
        if done < frames:
            logger.warning(
                "WAL checkpoint of %s is blocked: %d of %d frames copied. A connection holds a "
                "read transaction open; the -wal file grows until it closes.",
                store.path,
                done,
                frames,
            )
