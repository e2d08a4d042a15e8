"""Task IDs (PROTOCOL.md 4.2).

The ID is `(ms since 2010-01-01) << 20 | random16 << 4` in hex, so it ends in
0 (the summary ID) and sorts by creation time; a run ID replaces the last digit
with the try number (1..15), which is what a stock bot expects (0.2.6 M2).
"""

from __future__ import annotations

import re
import secrets

_EPOCH_2010 = 1262304000.0
_TASK_ID_RE = re.compile(r"[0-9a-f]{15,17}")
MAX_TRIES = 15


def new_task_id(now: float) -> str:
    """Returns a fresh summary task ID for a request created at `now`."""
    ms = int((now - _EPOCH_2010) * 1000)
    return f"{(ms << 20) | (secrets.randbits(16) << 4):x}"


def is_task_id(value: str) -> bool:
    """True for a well-formed summary or run ID."""
    return bool(_TASK_ID_RE.fullmatch(value))


def split_run_id(run_id: str) -> tuple[str, int]:
    """Returns (summary ID, try number) of a run or summary ID; try 0 for a summary ID."""
    return run_id[:-1] + "0", int(run_id[-1], 16)
