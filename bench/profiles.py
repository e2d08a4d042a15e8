"""What a profiled server spent its time on, per task: the top of its cProfile dump.

A profiled server (server_process.start_server(profile=True)) writes a
cProfile dump and the count of its SQLite statements when it stops; this
turns both into report rows per task (or per whatever `per` counts).
"""

from __future__ import annotations

import pstats
from pathlib import Path
from typing import Any

from figures import Json, per

ROOT = Path(__file__).resolve().parent.parent
# Time blocked in epoll is the event loop idling, not work: shown apart.
IDLE_MARK = "select.epoll"
# Where pstats keeps own and cumulative time in an entry (cc, ncalls, tottime, cumtime, callers).
OWN, CUMULATIVE = 2, 3
# The statement counter of bench/counted_serve.py is measurement, not server work.
COUNTER_MARK = "counted_serve.py"
# The event loop's own frames hold everything that runs in the loop: left out
# of the cumulative ranking, which would otherwise start with them.
LOOP_FRAMES = (
    "asyncio/base_events.py",
    "asyncio/events.py",
    "asyncio/runners.py",
    "selectors.py",
    "of '_contextvars.Context' objects",
    "cProfile.py",
    "server/__main__.py",
    "server/cli/",
    "aiohttp/web.py",
    "<string>",
)


def _name(func: tuple[str, int, str]) -> str:
    filename, line, function = func
    short = filename.replace(str(ROOT) + "/", "")
    short = short.split("site-packages/")[-1].split("/lib/python3")[-1]
    return f"{short}:{line}({function})"


def profile_summary(path: Path, per_count: int, sql_counts: Json, top: int = 25) -> Json:
    """The top of a cProfile dump by own and by cumulative time, in µs per `per_count` items.

    `sql_counts` (statements by first keyword) are shown per item too.
    """
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # pstats keeps it untyped
    idle = sum(v[2] for k, v in raw.items() if IDLE_MARK in k[2])
    raw = {k: v for k, v in raw.items() if IDLE_MARK not in k[2] and COUNTER_MARK not in k[0]}
    total = sum(entry[2] for entry in raw.values())

    def rows(index: int) -> list[str]:
        shown = list(raw.items())
        if index == CUMULATIVE:
            shown = [
                (k, v) for k, v in shown if not any(m in k[0] or m in k[2] for m in LOOP_FRAMES)
            ]
        ordered = sorted(shown, key=lambda item: item[1][index], reverse=True)[:top]
        return [
            f"{1e6 * tottime / per_count:9.1f} us own {1e6 * cumtime / per_count:9.1f} us cum"
            f" {ncalls / per_count:8.2f} calls  {_name(func)}"
            for func, (_cc, ncalls, tottime, cumtime, _callers) in ordered
        ]

    statements = sum(sql_counts.values())
    return {
        "note": "cProfile counts every resumption of a coroutine as a call; "
        "it slows the server, so read shares, not absolute times",
        "busy_seconds": round(total, 3),
        "idle_seconds": round(idle, 3),
        "per": per_count,
        "busy_us_per_item": per(total, per_count, 1e6, 1),
        "sqlite_statements_per_item": per(statements, per_count, 1, 2),
        "sqlite_statements_per_item_by_kind": {
            kind: per(count, per_count, 1, 2) for kind, count in sorted(sql_counts.items())
        },
        "top_by_own_time": rows(OWN),
        "top_by_cumulative_time": rows(CUMULATIVE),
    }
