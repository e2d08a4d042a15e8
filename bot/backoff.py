"""Retry pacing and error throttling for the bot's loops.

The numbers copy the stock bot (PROTOCOL.md 0.2.5 P6, 3.3, 3.4) so that a
server sees the same traffic shape from either bot: poll errors back off as
1.4^(n-1) (first retry immediate, cap 300 s), handshakes as 2^(n-1), both
jittered so a fleet that lost its server does not come back in lockstep.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Dict, Optional

# Longest wait between two attempts: a bot that lost its server still looks
# for it every five minutes.
MAX_DELAY = 300.0
# The same bot_error message is sent at most this often (PROTOCOL.md 3.4).
ERROR_REPORT_INTERVAL = 600.0


def jittered(base: float, rng: Optional[random.Random] = None) -> float:
    """`base` scaled by U(0.8, 1.2)."""
    return base * (rng or random).uniform(0.8, 1.2)


def poll_delay(errors: int, rng: Optional[random.Random] = None) -> float:
    """Wait before the next poll after `errors` consecutive failures (>= 1)."""
    if errors <= 1:
        return 0.0
    return min(MAX_DELAY, jittered(1.4 ** (errors - 1), rng))


def handshake_delay(failures: int, rng: Optional[random.Random] = None) -> float:
    """Wait before the next handshake after `failures` consecutive failures (>= 1)."""
    if failures <= 1:
        return 0.0
    return min(MAX_DELAY, jittered(2.0 ** min(failures - 1, 10), rng))


def http_delay(attempt: int, rng: Optional[random.Random] = None) -> float:
    """Wait before HTTP retry number `attempt` (>= 1) inside one call."""
    return min(15.0, jittered(1.5 ** (attempt - 1), rng))


class ErrorThrottle:
    """Decides which bot_error messages are worth sending again."""

    def __init__(
        self, interval: float = ERROR_REPORT_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._last: Dict[str, float] = {}

    def should_report(self, message: str) -> bool:
        """True at most once per interval for the same message."""
        now = self._clock()
        last = self._last.get(message)
        if last is not None and now - last < self._interval:
            return False
        self._last[message] = now
        return True
