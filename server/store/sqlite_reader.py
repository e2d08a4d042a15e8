"""Long reads of the SQLite store, on a connection and a thread of their own.

Most store calls take tens of microseconds and run on the event loop
(server/store/sqlite.py). A count of a deep history does not: it reads as
many index entries as it counts, 69 ms for a million pending tasks, and on
the loop every bot's call would wait that long behind it. The Reader runs
such reads on a second connection to the same file, in one worker thread.
With WAL a reader never blocks the writer, and each read outside a
transaction sees the file as last committed, so whatever the store had
committed when the call was made is in its answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from server.store.sqlite_schema import BUSY_TIMEOUT_MS

P = ParamSpec("P")
T = TypeVar("T")


class Reader:
    """Runs read-only functions of a connection in a worker thread, one at a time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = path
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sqlite-reader"
        )
        # Opened, used and closed in the worker thread only.
        self._db: sqlite3.Connection | None = None
        self._closed = False

    async def run(
        self,
        read: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`read(connection, *args, **kwargs)` in the worker thread; the loop runs meanwhile."""

        def bound(db: sqlite3.Connection) -> T:
            return read(db, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, bound)

    def close(self) -> None:
        """Closes the connection once the reads under way end; closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._pool.submit(self._close_db).result()
            self._pool.shutdown(wait=True)

    def _call(self, read: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            self._db = sqlite3.connect(self._path, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # A mistake that writes through here fails instead of racing the store.
            self._db.execute("PRAGMA query_only = ON")
        return read(self._db)

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
