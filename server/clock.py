"""The injected clock: every read of the time in the server goes through one.

Tests use `FakeClock` and advance it instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time in seconds since the epoch."""

    def now(self) -> float:
        """Returns the current time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Returns time.time()."""
        return time.time()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        """Returns the fake time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Moves the time forward."""
        self._now += seconds

    def set(self, when: float) -> None:
        """Sets the time."""
        self._now = when
