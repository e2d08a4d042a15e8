"""Output chunk arithmetic, shared by the Store backends.

Output is kept in OUTPUT_CHUNK_SIZE chunks, each stored only up to its last
written byte, so a hole (a range never written) costs nothing and reads as
zeros. How a write falls into chunks, what a chunk holds after a write, and
how a read is put together from the chunks it spans are the same whatever
stores the chunks (sqlite_output, datastore_output). Pure functions, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from server.store.base import MAX_OUTPUT_SIZE, OUTPUT_CHUNK_SIZE

# (chunk index, offset in the chunk, bytes to put there)
Piece = tuple[int, int, bytes]


def split(offset: int, data: bytes) -> tuple[int, list[Piece]]:
    """Cuts a write into the pieces that fall in each chunk; returns (end, pieces).

    Bytes past MAX_OUTPUT_SIZE are dropped. `end` is where the write ends,
    capped at MAX_OUTPUT_SIZE even when every byte was dropped, so that the
    size still grows and readers see that output was lost.
    """
    end = min(offset + len(data), MAX_OUTPUT_SIZE)
    pieces: list[Piece] = []
    pos, view = offset, memoryview(data)[: max(0, end - offset)]
    while view:
        index, start = divmod(pos, OUTPUT_CHUNK_SIZE)
        piece = view[: OUTPUT_CHUNK_SIZE - start]
        pieces.append((index, start, bytes(piece)))
        pos += len(piece)
        view = view[len(piece) :]
    return end, pieces


def end_of(piece: Piece) -> int:
    """The output offset just past a piece."""
    index, start, data = piece
    return index * OUTPUT_CHUNK_SIZE + start + len(data)


def overlay(old: bytes, start: int, data: bytes) -> bytes:
    """A chunk's bytes after writing `data` at `start`; a gap before it reads as zeros."""
    return old[:start].ljust(start, b"\0") + data + old[start + len(data) :]


@dataclasses.dataclass(frozen=True)
class Span:
    """The bytes a read returns: [offset, end), within chunks first..last."""

    offset: int
    end: int

    @property
    def first(self) -> int:
        """The index of the first chunk the read touches."""
        return self.offset // OUTPUT_CHUNK_SIZE

    @property
    def last(self) -> int:
        """The index of the last chunk the read touches."""
        return (self.end - 1) // OUTPUT_CHUNK_SIZE


def span(size: int, offset: int, length: int) -> Span | None:
    """What reading `length` bytes (-1: to the end) at `offset` covers, or None for nothing."""
    end = size if length < 0 else min(size, offset + length)
    return Span(offset, end) if offset < end else None


def assemble(read: Span, chunks: Iterable[tuple[int, bytes]]) -> bytes:
    """Puts the bytes of `read` together from (index, bytes) chunks; missing ones are zeros."""
    buf = bytearray((read.last - read.first + 1) * OUTPUT_CHUNK_SIZE)
    for index, chunk in chunks:
        at = (index - read.first) * OUTPUT_CHUNK_SIZE
        buf[at : at + len(chunk)] = chunk
    start = read.offset - read.first * OUTPUT_CHUNK_SIZE
    return bytes(buf[start : start + read.end - read.offset])
