"""Result expiry: prune finished results older than ``OPTIONS["results_ttl"]``, a little at a time.

Every worker process's maintenance thread calls ``Pruner.tick`` now and then. A tick deletes at
most a few windows of rows, each in its own short transaction, and remembers where it stopped,
so a file with a million old results is worked through over several ticks without ever holding
the write lock for long (an enqueue waits for one window at most).
"""

from __future__ import annotations

import logging
import random
import time

from .._store.store import Store
from ..exceptions import StoreError

__all__ = ["Pruner"]

logger = logging.getLogger(__name__)

# Rows per transaction, and transactions per tick.
PRUNE_BATCH = 500
PRUNE_WINDOWS_PER_TICK = 20


class Pruner:
    """Prune results older than ``ttl_s`` every ``interval_s`` (with jitter), bit by bit."""

    def __init__(self, ttl_s: float | None, interval_s: float | None = None) -> None:
        self.ttl_s = ttl_s
        # Every minute; more often for a short ttl, so results live about as long as asked.
        if interval_s is None:
            interval_s = 60.0 if ttl_s is None else min(60.0, max(1.0, ttl_s))
        self.interval_s = interval_s
        # Processes started together should not all prune at once.
        self._next = time.monotonic() + random.uniform(0.1, 1.0) * interval_s
        self._after: int = 0
        self.deleted = 0

    def tick(self, store: Store) -> int:
        """Prune a little if it is time; return how many results were deleted."""
        if self.ttl_s is None or time.monotonic() < self._next:
            return 0
        cutoff = store.now_us() - int(self.ttl_s * 1_000_000)
        deleted = 0
        try:
            for _ in range(PRUNE_WINDOWS_PER_TICK):
                count, after = store.prune_step(
                    finished_before_us=cutoff, after=self._after, batch=PRUNE_BATCH
                )
                deleted += count
                if after is None:  # walked to the cut-off: start over next time
                    self._after = 0
                    self._next = time.monotonic() + self.interval_s * random.uniform(0.8, 1.2)
                    break
                self._after = after
            else:  # more to do: come back soon, after other writers had their turn
                self._next = time.monotonic() + 1.0
        except StoreError:
            logger.exception("Pruning old results failed; will retry")
            self._next = time.monotonic() + self.interval_s
        if deleted:
            logger.info("Pruned %d results older than %.0f s", deleted, self.ttl_s)
        self.deleted += deleted
        return deleted
