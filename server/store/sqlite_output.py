"""Task output in the SQLite backend: bytes addressed by run ID and offset.

Output is kept in chunks (server/store/chunks.py), rows of `output_chunks`;
the `outputs` row holds the size: the end of the furthest write. Helpers of
server.store.sqlite; the caller owns the transaction.
"""

from __future__ import annotations

import sqlite3

from server.store import chunks


def write(db: sqlite3.Connection, run_id: str, offset: int, data: bytes) -> None:
    """Overlays `data` at `offset`, dropping bytes past MAX_OUTPUT_SIZE.

    The size grows to the end of the write, capped at MAX_OUTPUT_SIZE even
    when every byte was dropped, so readers see that output was lost.
    """
    end, pieces = chunks.split(offset, data)
    for index, start, piece in pieces:
        _write_chunk(db, run_id, index, start, piece)
    db.execute(
        "INSERT INTO outputs (run_id, size) VALUES (?, ?) ON CONFLICT (run_id)"
        " DO UPDATE SET size = excluded.size WHERE excluded.size > size",
        (run_id, end),
    )


def read(db: sqlite3.Connection, run_id: str, offset: int, length: int) -> bytes:
    """Reads up to `length` bytes at `offset` (-1: to the end); holes read as zeros."""
    wanted = chunks.span(size(db, run_id), offset, length)
    if wanted is None:
        return b""
    rows = db.execute(
        "SELECT chunk_index, data FROM output_chunks"
        " WHERE run_id = ? AND chunk_index BETWEEN ? AND ?",
        (run_id, wanted.first, wanted.last),
    ).fetchall()
    return chunks.assemble(wanted, rows)


def size(db: sqlite3.Connection, run_id: str) -> int:
    """Returns the end of the furthest write, 0 for a run without output."""
    row = db.execute("SELECT size FROM outputs WHERE run_id = ?", (run_id,)).fetchone()
    return 0 if row is None else int(row[0])


def _write_chunk(db: sqlite3.Connection, run_id: str, index: int, start: int, piece: bytes) -> None:
    """Overlays `piece` at `start` in one chunk; rewriting the same bytes writes nothing."""
    row = db.execute(
        "SELECT data FROM output_chunks WHERE run_id = ? AND chunk_index = ?", (run_id, index)
    ).fetchone()
    old = bytes(row[0]) if row else b""
    new = chunks.overlay(old, start, piece)
    if new != old:
        db.execute(
            "INSERT OR REPLACE INTO output_chunks (run_id, chunk_index, data) VALUES (?, ?, ?)",
            (run_id, index, new),
        )
