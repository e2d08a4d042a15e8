"""Task output in the SQLite backend: bytes addressed by run ID and offset.

Output is kept in OUTPUT_CHUNK_SIZE chunks, each stored only up to its last
written byte, so a hole (a range never written) costs nothing and reads as
zeros. The `outputs` row holds the size: the end of the furthest write.
Helpers of server.store.sqlite; the caller owns the transaction.
"""

from __future__ import annotations

import sqlite3

from server.store.base import MAX_OUTPUT_SIZE, OUTPUT_CHUNK_SIZE


def write(db: sqlite3.Connection, run_id: str, offset: int, data: bytes) -> None:
    """Overlays `data` at `offset`, dropping bytes past MAX_OUTPUT_SIZE.

    The size grows to the end of the write, capped at MAX_OUTPUT_SIZE even
    when every byte was dropped, so readers see that output was lost.
    """
    end = min(offset + len(data), MAX_OUTPUT_SIZE)
    kept = memoryview(data)[: max(0, end - offset)]
    pos = offset
    while kept:
        index, start = divmod(pos, OUTPUT_CHUNK_SIZE)
        piece = kept[: OUTPUT_CHUNK_SIZE - start]
        _write_chunk(db, run_id, index, start, piece)
        pos += len(piece)
        kept = kept[len(piece) :]
    db.execute(
        "INSERT INTO outputs (run_id, size) VALUES (?, ?) ON CONFLICT (run_id)"
        " DO UPDATE SET size = excluded.size WHERE excluded.size > size",
        (run_id, end),
    )


def read(db: sqlite3.Connection, run_id: str, offset: int, length: int) -> bytes:
    """Reads up to `length` bytes at `offset` (-1: to the end); holes read as zeros."""
    end = size(db, run_id)
    if length >= 0:
        end = min(end, offset + length)
    if offset >= end:
        return b""
    first, last = offset // OUTPUT_CHUNK_SIZE, (end - 1) // OUTPUT_CHUNK_SIZE
    rows = db.execute(
        "SELECT chunk_index, data FROM output_chunks"
        " WHERE run_id = ? AND chunk_index BETWEEN ? AND ?",
        (run_id, first, last),
    ).fetchall()
    buf = bytearray((last - first + 1) * OUTPUT_CHUNK_SIZE)
    for index, chunk in rows:
        at = (index - first) * OUTPUT_CHUNK_SIZE
        buf[at : at + len(chunk)] = chunk
    start = offset - first * OUTPUT_CHUNK_SIZE
    return bytes(buf[start : start + end - offset])


def size(db: sqlite3.Connection, run_id: str) -> int:
    """Returns the end of the furthest write, 0 for a run without output."""
    row = db.execute("SELECT size FROM outputs WHERE run_id = ?", (run_id,)).fetchone()
    return 0 if row is None else int(row[0])


def _write_chunk(
    db: sqlite3.Connection, run_id: str, index: int, start: int, piece: memoryview
) -> None:
    """Overlays `piece` at `start` in one chunk; rewriting the same bytes writes nothing."""
    row = db.execute(
        "SELECT data FROM output_chunks WHERE run_id = ? AND chunk_index = ?", (run_id, index)
    ).fetchone()
    old = bytes(row[0]) if row else b""
    new = old[:start].ljust(start, b"\0") + piece + old[start + len(piece) :]
    if new != old:
        db.execute(
            "INSERT OR REPLACE INTO output_chunks (run_id, chunk_index, data) VALUES (?, ?, ?)",
            (run_id, index, new),
        )
