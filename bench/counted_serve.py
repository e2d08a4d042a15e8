"""`drover serve`, counting every SQLite statement the server executes (bench --profile).

    python -m cProfile -o server.prof bench/counted_serve.py COUNTS.json serve ...

Every connection the server opens gets a trace callback (sqlite3's
`set_trace_callback`, called once per statement SQLite runs, each row of an
`executemany` included) that counts statements by their first keyword
(SELECT, INSERT, BEGIN, ...). The counts are written to COUNTS.json when the
server exits, and the counts so far to COUNTS.json.snapshot on SIGUSR1 (so a
benchmark can tell one phase from the next). The callback costs a Python
call per statement, so only profiled runs use this.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

from server.cli import main

_connect = sqlite3.connect
_counts: collections.Counter[str] = collections.Counter()


def _count(statement: str) -> None:
    _counts[statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"] += 1


def _counting_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    db: sqlite3.Connection = _connect(*args, **kwargs)
    db.set_trace_callback(_count)
    return db


def _write(path: Path) -> None:
    # Written beside and renamed, so a reader never sees half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(dict(_counts), sort_keys=True))
    os.replace(partial, path)


def serve(counts_path: Path, argv: list[str]) -> int:
    """Runs the drover command line `argv`; writes the statement counts on the way out."""
    # Takes what sqlite3.connect takes (it passes everything on); mypy sees its overloads.
    sqlite3.connect = _counting_connect  # type: ignore[assignment]
    snapshot = counts_path.with_name(counts_path.name + ".snapshot")
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: _write(snapshot))
    try:
        return main(argv)
    finally:
        _write(counts_path)


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1]), sys.argv[2:]))
