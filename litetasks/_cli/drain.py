"""``litetasks run --burst`` and ``--until-empty``: drain the served queues, then say what ran
and what is left.

``--burst`` runs every task due when it looks (READY, ``run_after`` past) and exits once a
claim finds none: a retry waiting for its back-off and a deferred task are left behind.
``--until-empty`` then waits for those (and for tasks RUNNING under other workers, whose
retries may follow) and drains again, until none is left, or none is due within its bound.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

import typer

from .._runtime.supervisor import Supervisor, new_worker_id
from .._store.records import JobState
from ..exceptions import LiteTasksError

if TYPE_CHECKING:
    from types import FrameType

    from .._django.backend import SQLiteBackend
    from .._store.config import WorkerConfig
    from .._store.reading import Left

__all__ = ["drain"]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_RECHECK_S = 0.5  # how often a wait looks at tasks RUNNING elsewhere


def drain(backend: SQLiteBackend, config: WorkerConfig, until_empty_s: float | None) -> int:
    """Run bursts until nothing is left (``until_empty_s`` < 0: one burst; None: no bound);
    print the summary; return the exit code."""
    store = backend.store
    since = store.now_us()
    prefix = new_worker_id().rsplit(":", 1)[0] + ":"  # host:pid: every worker we fork
    deadline = None if until_empty_s is None else time.monotonic() + until_empty_s
    stop = _StopFlag()
    try:
        while True:
            supervisor = Supervisor(backend, config, {})
            code = supervisor.run()
            # From here a stop signal is ours: before, the supervisor's handler counted it.
            stop.install()
            if code or supervisor.stop_requested or stop.raised:
                break
            if (until_empty_s is not None and until_empty_s < 0) or not _wait_for_work(
                backend, config, deadline, stop
            ):
                break
        left = store.left(config.queues, worker_prefix=prefix, since_us=since)
    except LiteTasksError as exc:  # a damaged queue file: the pool has said what to do
        typer.echo(f"litetasks: error: {exc}", err=True)
        return 1
    finally:
        stop.restore()
    typer.echo(summary(left, store.now_us()))
    return code


def _wait_for_work(
    backend: SQLiteBackend, config: WorkerConfig, deadline: float | None, stop: _StopFlag
) -> bool:
    """Wait until a READY task is due, or one RUNNING elsewhere ends; False when none is
    left, none is due before ``deadline``, or a stop signal came."""
    just_drained = True
    while not stop.raised:
        left = backend.store.left(config.queues, worker_prefix=None)
        if left.ready_now and just_drained:
            # Due, yet the burst that just ended did not take it (enqueued as it ended, or
            # one no worker here may take): look again in a moment, never in a loop.
            just_drained = False
            stop.sleep(_RECHECK_S)
            continue
        if left.ready_now:
            return True
        if not left.running and left.next_due_us is None:
            return False
        wait_s = _RECHECK_S
        if left.next_due_us is not None:
            due_in_s = max(0.0, (left.next_due_us - backend.store.now_us()) / 1e6)
            wait_s = min(wait_s, due_in_s) if left.running else due_in_s
        if deadline is not None and time.monotonic() + wait_s > deadline:
            if not left.running or time.monotonic() >= deadline:
                return False
            wait_s = deadline - time.monotonic()
        stop.sleep(wait_s)
    return False


class _StopFlag:
    """SIGTERM, SIGINT or SIGHUP between bursts: stop waiting (a handler that sets a flag).

    Each burst's supervisor installs its own handlers; ``install()`` takes them back after
    it, ``restore()`` puts back those of before the first burst.
    """

    def __init__(self) -> None:
        self.raised = False
        self._previous = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}

    def install(self) -> None:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.raised = True

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.raised and time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(signum, handler)


def summary(left: Left, now_us: int) -> str:
    """``Ran 3 tasks: 1 SUCCESSFUL, 1 FAILED, 1 waiting for a retry. Left in the queues
    served: 0 READY now, 2 READY later (the first in 0.8 s), 0 RUNNING elsewhere.``"""
    ran = sum(left.ran.values())
    words = {
        JobState.SUCCESSFUL: "SUCCESSFUL",
        JobState.FAILED: "FAILED",
        JobState.READY: "waiting for a retry",
        JobState.RUNNING: "RUNNING again elsewhere",
    }
    parts = [f"{left.ran[state]} {text}" for state, text in words.items() if left.ran.get(state)]
    later = f"{left.ready_later} READY later"
    if left.next_due_us is not None:
        later += f" (the first in {max(0.0, (left.next_due_us - now_us) / 1e6):.1f} s)"
    return (
        f"Ran {ran} task{'s' if ran != 1 else ''}"
        + (f": {', '.join(parts)}" if parts else "")
        + f". Left in the queues served: {left.ready_now} READY now, {later}, "
        f"{left.running} RUNNING elsewhere."
    )
