"""Time in the queue file: integer microseconds since the Unix epoch (UTC), and the conversions.

Every time a row holds is such an integer, so datetimes round-trip exactly. The conversions to
and from aware UTC datetimes live here, once; the Django layer adds ``USE_TZ`` and
``TIME_ZONE`` on top (``litetasks._django.results``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = [
    "EARLIEST_US",
    "EPOCH",
    "LATEST_US",
    "MICROSECOND",
    "Clock",
    "clamp_us",
    "is_time",
    "us_from_datetime",
    "utc_datetime",
    "wall_clock_us",
]

Clock = Callable[[], int]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# A timedelta times an int is exact, and a third of the cost of timedelta(microseconds=...).
MICROSECOND = timedelta(microseconds=1)

# The times the queue file holds, in microseconds since the Unix epoch: 0001-01-02 to
# 9999-12-30 UTC, a day inside what Python's datetime can hold, so that a stored time converts
# to a datetime in any time zone (UTC offsets are less than a day) without overflowing.
EARLIEST_US = -62_135_510_400_000_000  # 0001-01-02T00:00:00Z
LATEST_US = 253_402_214_399_999_999  # 9999-12-30T23:59:59.999999Z


def wall_clock_us() -> int:
    """Return the current time in integer microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def clamp_us(value: int) -> int:
    """``value`` moved into ``EARLIEST_US..LATEST_US``: any stored integer becomes a time
    every conversion can take."""
    if value < EARLIEST_US:
        return EARLIEST_US
    return LATEST_US if value > LATEST_US else value


def is_time(value: Any) -> bool:
    """Whether ``value`` is a stored time litetasks can convert (an int in range)."""
    return type(value) is int and EARLIEST_US <= value <= LATEST_US


def utc_datetime(us: int) -> datetime:
    """The aware UTC datetime of ``us`` (microseconds since the epoch).

    Total: a value outside the times litetasks stores (only a row written by other code holds
    one) becomes the nearest time it stores, never an ``OverflowError``.
    """
    if not EARLIEST_US <= us <= LATEST_US:
        us = clamp_us(us)
    return EPOCH + MICROSECOND * us


def us_from_datetime(moment: datetime) -> int:
    """``moment`` (an aware datetime) in microseconds since the epoch; not range-checked."""
    return (moment - EPOCH) // MICROSECOND
