"""Recover the tasks of lost workers: judged by pid in our liveness domain, else by heartbeat."""

from __future__ import annotations

import logging

from .._store.liveness import ProcessIdentity, classify_workers, this_process
from .._store.records import ErrorRecord
from .._store.store import Store

__all__ = ["lost_worker_error", "recover_lost"]

logger = logging.getLogger(__name__)


def lost_worker_error() -> ErrorRecord:
    return ErrorRecord(
        exception_class_path="litetasks.exceptions.WorkerLost",
        traceback=(
            "litetasks.exceptions.WorkerLost: the worker running this task stopped without "
            "recording an outcome (killed, out of memory, crashed, or the machine stopped).\n"
        ),
    )


def recover_lost(
    store: Store,
    lease_s: float,
    here: ProcessIdentity | None = None,
    known_dead: tuple[str, ...] = (),
) -> int:
    """Recover the jobs of workers that are dead or silent past the lease; return how many.

    A worker of our liveness domain (host, boot, PID namespace: see liveness.py) is dead when
    its process is gone, whatever its heartbeat says; any other worker is lost when its
    heartbeat is older than ``lease_s``.
    """
    here = here or this_process()
    dead, alive = classify_workers(store.get_workers(), here)
    recovered = store.recover_lost(
        stale_before_us=store.now_us() - int(lease_s * 1_000_000),
        error=lost_worker_error(),
        known_dead=[*dead, *known_dead],
        known_alive=alive,
    )
    for job_id, state in recovered:
        logger.warning("Task id=%s was running under a lost worker; now %s", job_id, state)
    return len(recovered)
