"""WAL checkpoints of the SQLite store, in a thread of their own.

In WAL mode a commit appends pages to the `-wal` file; a checkpoint copies
them back into the database file and syncs it. SQLite's automatic
checkpoint runs inside the commit that crosses its threshold, on the
thread that commits: here the event loop, which then stalls for the copy
and two fsyncs (about 1.5 ms each on this kind of disk). Measured on a
drain of no-op tasks, those checkpoints were a quarter of the store's time.

So a store's checkpoints run in a background thread with its own
connection: every CHECKPOINT_SECS, a PASSIVE checkpoint, which never
blocks the writers or readers of other connections (sqlite3 releases the
GIL while it works).

The WAL starts over from its beginning only once a write finds all of it
copied back, and under a steady stream of commits that did not happen with
PASSIVE checkpoints alone: in bench/b2_latency.py at 200 tasks/s each pass
reported every page copied (of the WAL as the pass found it; commits kept
landing while it synced), yet the file kept growing until the store's own
connection checkpointed inside a commit, on the event loop, copying all
that came since the thread's last pass (3-8 ms stalls every 2-3 s, the
slowest commits of the run). So once the WAL holds RESTART_PAGES, the
thread follows its PASSIVE pass with a RESTART checkpoint, which holds
writers off while it copies the little the PASSIVE pass left and syncs
(1.6-3.9 ms there), and after which the next write starts the WAL over.
It waits at most RESTART_WAIT_MS for the write lock and for readers, so
another process's long read only puts the restart off to a later pass,
holding the store's writers off no longer than that. The store's
own connection keeps an automatic checkpoint at a much higher threshold,
only as a bound on the WAL's size should this thread fall behind or stop.

Starting the WAL over has a price of its own: the write that does it
writes a new WAL header and syncs it before its pages (SQLite's guard
against out-of-order writes after a restart), 1 ms of fdatasync on the
event loop here. At low rates every PASSIVE pass copied the whole WAL
between two commits, so the next commit started the WAL over: traced in
bench/b2_latency.py at 50 tasks/s, 21 such syncs on the event loop in
15 s, one task in 25 paying a millisecond, the p99 itself. So between
passes the thread holds a read transaction on a second connection, its
pin, taken just before each PASSIVE pass. A reader whose snapshot ends in
the WAL keeps writers from starting it over, and the pass copies up to
the pin's snapshot, which is all that was committed before it: writes go
on appending, and the WAL starts over only after a RESTART (each
RESTART_PAGES pages, about every 6 s at 50 tasks/s) or after the server
was idle through a pass (the pin's snapshot then ends in the database
file and does not hold the WAL). A pass that finds the WAL long lets the
pin go before its RESTART and holds none until its next pass, so another
process's thread on the same file (replicas) gets its RESTART through.

Checkpoints are about the file's layout, not durability: a commit is as
durable before its checkpoint as after (synchronous = NORMAL, see
sqlite_schema.connect).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading

from server.store.sqlite_schema import BUSY_TIMEOUT_MS

log = logging.getLogger("drover.store")

# How often the background thread checkpoints. Each pass copies what was
# committed before it, so shorter passes are smaller (passes every 2 s were
# worse for B2's tail, bench/README.md); the WAL's length is bounded by
# RESTART_PAGES, not by this. A pass with nothing to copy costs a few
# microseconds.
CHECKPOINT_SECS = 0.5
# Once the WAL holds this many pages (4 KiB each), the thread restarts it
# (see the module docstring): about every 2.5 s at 200 tasks/s.
RESTART_PAGES = 8_192
# How long a RESTART checkpoint waits for the write lock and for readers.
RESTART_WAIT_MS = 20
# The store's own connection checkpoints by itself once the WAL holds this
# many pages: only when the thread cannot keep up.
FALLBACK_AUTOCHECKPOINT_PAGES = 40_000
# Past a checkpoint that emptied it, the WAL file is cut back to this size.
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


class Checkpointer:
    """Checkpoints one database file in a thread until stopped (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], restart_pages: int = RESTART_PAGES) -> None:
        self._path = path
        self._restart_pages = restart_pages
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        # RESTART checkpoints that got their locks in time.
        self.restarts = 0

    @classmethod
    def start(cls, db: sqlite3.Connection, path: str | os.PathLike[str]) -> Checkpointer:
        """Moves `db`'s checkpoints to a new background thread, which is started."""
        db.execute(f"PRAGMA wal_autocheckpoint = {FALLBACK_AUTOCHECKPOINT_PAGES}")
        db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        checkpointer = cls(path)
        checkpointer._thread.start()
        return checkpointer

    def stop(self) -> None:
        """Stops the thread after its current checkpoint; stopping twice is harmless."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        with contextlib.ExitStack() as connections:
            try:
                db = connections.enter_context(_connect(self._path))
                pin = connections.enter_context(_connect(self._path))
            except sqlite3.Error:
                log.exception("cannot open %s for checkpoints; SQLite will do them", self._path)
                return
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            while not self._stop.wait(CHECKPOINT_SECS):
                try:
                    self.checkpoint(db, pin)
                except sqlite3.Error as e:
                    # Another process checkpointing, a locked file: try again later.
                    log.debug("checkpoint of %s skipped: %s", self._path, e)

    def checkpoint(self, db: sqlite3.Connection, pin: sqlite3.Connection | None = None) -> None:
        """One pass: PASSIVE, then RESTART once the WAL is long (see the module docstring).

        With `pin`, a connection of its own, the pass first renews the read
        transaction that keeps writers from starting the WAL over; a pass
        that finds the WAL long lets it go.
        """
        if pin is not None:
            _release(pin)
            pin.execute("BEGIN")
            pin.execute("SELECT count(*) FROM sqlite_master").fetchone()
        _busy, pages, _copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if pages < self._restart_pages:
            return
        if pin is not None:
            _release(pin)
        db.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
        try:
            busy, _pages, _copied = db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        finally:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.restarts += not busy


def _connect(path: str | os.PathLike[str]) -> contextlib.closing[sqlite3.Connection]:
    """A connection of the thread's own, closed on leaving the block."""
    return contextlib.closing(sqlite3.connect(path, isolation_level=None))


def _release(pin: sqlite3.Connection) -> None:
    """Ends the pin's read transaction, if it holds one."""
    if pin.in_transaction:
        pin.execute("COMMIT")
