"""Fault injection for tests: kill, signal or fail a worker at named points of claim, run, record.

Enabled only by the ``LITETASKS_FAULTS`` environment variable, read once when this module is
imported; unset (always, outside tests), ``ACTIVE`` is False and each point costs one test of
a module constant. The value is ``point=action`` pairs separated by commas::

    LITETASKS_FAULTS="claim.after_update=kill9,record.before_commit=raise"

With ``LITETASKS_FAULTS_ONCE`` naming a folder, each fault fires once among every process that
shares the folder (the first to create ``<folder>/<point>``), so a restarted worker process
does not die again; without it a fault fires at every hit.

Points, in the order a task meets them:

- ``claim.before_begin``: a claim is about to start its transaction.
- ``claim.after_update``: the claim's UPDATE took jobs; not committed yet.
- ``claim.after_commit``: claimed jobs are committed, not yet handed to executor threads.
- ``run.before_call``: an executor is about to run a task (before ``task_started``).
- ``run.after_return``: the task returned; its outcome is not handed to the dispatcher yet.
- ``record.before_commit``: outcomes are written; not committed yet.
- ``record.after_commit``: outcomes are committed; ``task_finished`` not sent yet.

Actions: ``kill9`` (SIGKILL to this process), ``sigterm`` (SIGTERM to the supervisor, this
process's parent: the whole pool stops), ``raise`` (``InjectedFault``, an unexpected error),
and ``full`` (only at ``claim.*`` and ``record.before_commit``, which hold the connection: the
queue file may no longer grow, as if the disk were full, through ``PRAGMA max_page_count``;
it stays so for that connection and for every other one of this process that reaches a point
with its connection afterwards: executors write through connections of their own).
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import apsw

__all__ = ["ACTIONS", "ACTIVE", "POINTS", "InjectedFault", "fault", "parse"]

logger = logging.getLogger(__name__)

ENV = "LITETASKS_FAULTS"
ONCE_ENV = "LITETASKS_FAULTS_ONCE"
POINTS = (
    "claim.before_begin",
    "claim.after_update",
    "claim.after_commit",
    "run.before_call",
    "run.after_return",
    "record.before_commit",
    "record.after_commit",
)
ACTIONS = ("kill9", "sigterm", "raise", "full")
# Points where the store passes its connection (``full`` needs one).
_WITH_CONNECTION = ("claim.before_begin", "claim.after_update", "record.before_commit")


class InjectedFault(RuntimeError):
    """Raised at a fault point whose action is ``raise``."""


def parse(spec: str) -> dict[str, str]:
    """Parse ``point=action,…``; raise ``ValueError`` naming the valid points and actions."""
    faults: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        point, _, action = item.partition("=")
        if point not in POINTS or action not in ACTIONS:
            raise ValueError(
                f"{ENV}: {item!r} is not point=action. Points: {', '.join(POINTS)}; "
                f"actions: {', '.join(ACTIONS)}."
            )
        if action == "full" and point not in _WITH_CONNECTION:
            raise ValueError(
                f"{ENV}: {item!r}: 'full' needs a point that holds the connection: "
                f"{', '.join(_WITH_CONNECTION)}."
            )
        faults[point] = action
    return faults


_FAULTS = parse(os.environ.get(ENV, ""))
_ONCE = os.environ.get(ONCE_ENV, "")
ACTIVE = bool(_FAULTS)
# Once a ``full`` fault fired in this process: the page count the queue file may not pass.
_full_at_pages: list[int] = []


def fault(point: str, connection: apsw.Connection | None = None) -> None:
    """Fire the fault configured at ``point``, if any (callers test ``ACTIVE`` first)."""
    if connection is not None and _full_at_pages:  # a full disk is full for everyone
        connection.execute(f"PRAGMA max_page_count = {_full_at_pages[0]}")
    action = _FAULTS.get(point)
    if action is None or not _first_hit(point):
        return
    logger.warning("Injecting fault %s=%s in pid=%d", point, action, os.getpid())
    if action == "kill9":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "sigterm":
        os.kill(os.getppid(), signal.SIGTERM)
    elif action == "raise":
        raise InjectedFault(f"fault injected at {point}")
    elif connection is not None:  # full
        pages = int(connection.execute("PRAGMA page_count").get)
        _full_at_pages[:] = [pages]
        connection.execute(f"PRAGMA max_page_count = {pages}")


def _first_hit(point: str) -> bool:
    if not _ONCE:
        return True
    try:
        os.close(os.open(os.path.join(_ONCE, point), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
