"""Run a worker pool until told to stop: signals, graceful drain, second-signal exit."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from .config import WorkerConfig
from .execution import TaskRunner
from .liveness import this_process
from .worker import WorkerPool

if TYPE_CHECKING:
    from .backend import SQLiteBackend

__all__ = ["new_worker_id", "run_pool"]

logger = logging.getLogger(__name__)


def new_worker_id() -> str:
    """Return an id naming this process: ``host:pid:random``."""
    identity = this_process()
    return f"{identity.host}:{identity.pid}:{os.urandom(3).hex()}"


def build_pool(backend: SQLiteBackend, config: WorkerConfig) -> WorkerPool:
    return WorkerPool(
        store_factory=lambda: backend.store,
        runner_factory=lambda worker_id: TaskRunner(backend, worker_id),
        config=config,
        worker_id=new_worker_id(),
    )


def run_pool(backend: SQLiteBackend, config: WorkerConfig) -> int:
    """Run threads in this process until SIGTERM/SIGINT (or a burst ends); return the exit code.

    The first signal stops claiming and lets running tasks finish within ``grace_s``; a second
    one exits at once (the next pool to start settles what was running).
    """
    pool = build_pool(backend, config)
    signals_seen = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only flags and a wake-up here; logging and cleanup happen in the main loop.
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            os._exit(1)
        pool.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    logger.info(
        "Starting worker id=%s path=%s queues=%s threads=%d",
        pool.worker_id,
        backend.config.store.path,
        config.queues or "*",
        config.threads,
    )
    pool.run()
    if pool.failure is not None and not isinstance(pool.failure, KeyboardInterrupt):
        return 1
    logger.info("Worker id=%s stopped", pool.worker_id)
    return 0
