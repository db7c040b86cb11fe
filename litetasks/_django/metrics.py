"""The Prometheus collector of litetasks (public as ``litetasks.metrics``): it reads each
backend's queue file at every scrape, so the numbers are the same whichever process serves
them, with no multiprocess mode and nothing kept in memory."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .._store.liveness import classify_workers, this_process
from .._store.stats import BUCKETS_S, Histogram
from ..exceptions import ConfigurationError
from .backend import SQLiteBackend

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ["Collector", "metrics_tokens", "registry", "render"]

_STATES = ("READY", "RUNNING")
_LE = [*(repr(float(bound)) for bound in BUCKETS_S), "+Inf"]


def _prometheus() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core
    except ImportError:
        raise ConfigurationError(
            "litetasks.metrics needs prometheus_client: pip install 'litetasks[metrics]'."
        ) from None
    return prometheus_client


class Collector:
    """A ``prometheus_client`` collector of the litetasks backends in ``settings.TASKS``
    (or of ``backends``), reading each queue file when collected."""

    def __init__(self, backends: Iterable[SQLiteBackend] | None = None) -> None:
        self._backends = None if backends is None else list(backends)

    def backends(self) -> list[SQLiteBackend]:
        if self._backends is not None:
            return self._backends
        from django.conf import settings

        from .compat import InvalidTaskBackend, task_backends

        found = []
        for alias, spec in getattr(settings, "TASKS", {}).items():
            try:
                found.append(task_backends[alias])
            except InvalidTaskBackend:  # another library's backend that does not load: not ours
                if "litetasks" in str(spec.get("BACKEND", "")):
                    raise
        return [backend for backend in found if isinstance(backend, SQLiteBackend)]

    def collect(self) -> Iterator[Metric]:
        families = _Families(_prometheus().core)
        for backend in self.backends():
            families.add(backend)
        yield from families.all()


# (attribute, kind, name, help, labels besides "backend") of every metric family, in order.
_FAMILIES = (
    ("length", "gauge", "django_tasks_queue_length",
     "Tasks waiting (READY) or running (RUNNING) now.", ("queue", "status")),
    ("oldest", "gauge", "django_tasks_queue_oldest_ready_age_seconds",
     "How long the oldest due READY task has waited (0: none waits).", ("queue",)),
    ("finished", "counter", "django_tasks_finished",
     "Tasks that finished, by final status (kept in the queue file).",
     ("queue", "task", "status")),
    ("duration", "histogram", "django_tasks_duration_seconds",
     "How long a finished task's last attempt ran.", ("queue", "task")),
    ("wait", "histogram", "django_tasks_queue_wait_seconds",
     "How long a finished task's last attempt waited once due (per queue: a queue's wait is "
     "its workers', whatever the task).", ("queue",)),
    ("workers", "gauge", "litetasks_workers", "Registered worker processes.", ("state",)),
    ("busy", "gauge", "litetasks_busy_threads", "Tasks running under live workers.", ()),
    ("threads", "gauge", "litetasks_threads",
     "Executor threads of live workers (one registered by an older litetasks counts none).",
     ()),
    ("paused", "gauge", "litetasks_queue_paused", "1 when the queue is paused.", ("queue",)),
    ("db_size", "gauge", "litetasks_db_size_bytes", "Size of the queue file.", ()),
    ("wal_size", "gauge", "litetasks_wal_size_bytes", "Size of the queue file's WAL.", ()),
)  # fmt: skip


class _Families:
    """The metric families of one scrape, filled backend by backend."""

    length: Any
    oldest: Any
    finished: Any
    duration: Any
    wait: Any
    workers: Any
    busy: Any
    threads: Any
    paused: Any
    db_size: Any
    wal_size: Any

    def __init__(self, core: Any) -> None:
        kinds = {
            "gauge": core.GaugeMetricFamily,
            "counter": core.CounterMetricFamily,
            "histogram": core.HistogramMetricFamily,
        }
        self.families: list[Metric] = []
        for attribute, kind, name, text, labels in _FAMILIES:
            family = kinds[kind](name, text, labels=["backend", *labels])
            setattr(self, attribute, family)
            self.families.append(family)

    def all(self) -> list[Metric]:
        return self.families

    def add(self, backend: SQLiteBackend) -> None:
        store, alias = backend.store, backend.alias
        live = store.counters.live_counts()
        paused = store.pausing.paused_queues()
        queues = set(backend.queues) | set(live.ready) | {q for q, _ in live.running} | paused
        now = store.now_us()
        for queue in sorted(queues):
            running = sum(n for (q, _), n in live.running.items() if q == queue)
            self.length.add_metric([alias, queue, "READY"], live.ready.get(queue, 0))
            self.length.add_metric([alias, queue, "RUNNING"], running)
            oldest = live.oldest_due_us.get(queue)
            self.oldest.add_metric([alias, queue], 0 if oldest is None else (now - oldest) / 1e6)
            self.paused.add_metric([alias, queue], 1 if queue in paused else 0)
        self._add_finished(alias, store.counters.finished_stats())
        self._add_workers(backend, live.running, now)
        path = backend.config.store.path
        self.db_size.add_metric([alias], _size(path))
        self.wal_size.add_metric([alias], _size(f"{path}-wal"))

    def _add_finished(self, alias: str, stats: Any) -> None:
        for (queue, task, status), count in sorted(stats.totals.items()):
            self.finished.add_metric([alias, queue, task, status], count)
        for (queue, task), histogram in sorted(stats.durations.items()):
            self.duration.add_metric(
                [alias, queue, task], _cumulative(histogram), histogram.sum_us / 1e6
            )
        waits: dict[str, Histogram] = {}
        for (queue, _), histogram in stats.waits.items():
            summed = waits.setdefault(queue, Histogram())
            summed.counts = [a + b for a, b in zip(summed.counts, histogram.counts, strict=True)]
            summed.sum_us += histogram.sum_us
        for queue, histogram in sorted(waits.items()):
            self.wait.add_metric([alias, queue], _cumulative(histogram), histogram.sum_us / 1e6)

    def _add_workers(
        self, backend: SQLiteBackend, running: dict[tuple[str, str], int], now_us: int
    ) -> None:
        workers = backend.store.get_workers()
        dead, alive = classify_workers(workers, this_process())
        lease_us = backend.config.worker.lease_s * 1_000_000
        stale = {w.worker_id for w in workers if now_us - w.heartbeat_at_us > lease_us}
        lost = set(dead) | (stale - set(alive))
        live = {w.worker_id for w in workers} - lost
        self.workers.add_metric([backend.alias, "alive"], len(live))
        self.workers.add_metric([backend.alias, "lost"], len(lost))
        self.busy.add_metric(
            [backend.alias], sum(n for (_, owner), n in running.items() if owner in live)
        )
        self.threads.add_metric(
            [backend.alias], sum(w.threads or 0 for w in workers if w.worker_id in live)
        )


def _cumulative(histogram: Histogram) -> list[tuple[str, float]]:
    """Prometheus' buckets: (``le``, tasks at or under it), the last one +Inf."""
    buckets, total = [], 0
    for le, count in zip(_LE, histogram.counts, strict=True):
        total += count
        buckets.append((le, float(total)))
    return buckets


def _size(path: str | os.PathLike[str]) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def registry(backends: Iterable[SQLiteBackend] | None = None) -> CollectorRegistry:
    """A registry holding only the litetasks collector (for ``make_wsgi_app`` and the like)."""
    prometheus = _prometheus()
    made: CollectorRegistry = prometheus.CollectorRegistry(auto_describe=False)
    made.register(Collector(backends))
    return made


def render(backends: Iterable[SQLiteBackend] | None = None) -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and their content type."""
    prometheus = _prometheus()
    return prometheus.generate_latest(registry(backends)), prometheus.CONTENT_TYPE_LATEST


def metrics_tokens() -> list[str]:
    """The ``OPTIONS["metrics_token"]`` of every litetasks backend that sets one."""
    return [b.config.metrics_token for b in Collector().backends() if b.config.metrics_token]
