"""``litetasks status --watch``: the status, refreshed every few seconds until Ctrl-C.

On a terminal it redraws in place (rich ``Live``); when stdout is not a terminal (a pipe, a
log file) it prints the whole status once per interval, each time after a line with the time.
"""

from __future__ import annotations

import io
import json
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.text import Text

from .status import print_status, status_data

if TYPE_CHECKING:
    from .._django.backend import SQLiteBackend

__all__ = ["watch_status"]


def watch_status(backend: SQLiteBackend, *, interval_s: float, as_json: bool) -> None:
    """Show the status every ``interval_s`` seconds until Ctrl-C or SIGTERM (then return)."""
    # Stop cleanly on Ctrl-C and SIGTERM, even when started with SIGINT ignored (`&`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if as_json:
            _print_each(lambda: print(json.dumps(status_data(backend)), flush=True), interval_s)
        elif sys.stdout.isatty():
            _redraw(backend, interval_s)
        else:
            _print_each(lambda: _print_stamped(backend), interval_s)
    except KeyboardInterrupt:
        pass


def _print_each(show: Callable[[], None], interval_s: float) -> None:
    while True:
        started = time.monotonic()
        show()
        time.sleep(max(0.0, interval_s - (time.monotonic() - started)))


def _print_stamped(backend: SQLiteBackend) -> None:
    print(f"--- {datetime.now().astimezone().isoformat(timespec='seconds')}", flush=True)
    print_status(backend, as_json=False)
    sys.stdout.flush()


def _redraw(backend: SQLiteBackend, interval_s: float) -> None:
    screen = Console()
    with Live(_rendered(backend, screen.width), console=screen, auto_refresh=False) as live:
        while True:
            time.sleep(interval_s)
            live.update(_rendered(backend, screen.width), refresh=True)


def _rendered(backend: SQLiteBackend, width: int) -> Text:
    """The status as ``litetasks status`` prints it, with the time and how to stop."""
    captured = Console(file=io.StringIO(), force_terminal=True, width=width)
    print_status(backend, as_json=False, console=captured)
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    output = captured.file.getvalue()  # type: ignore[attr-defined]
    return Text.from_ansi(f"{output}{stamp} (Ctrl-C to stop)")
