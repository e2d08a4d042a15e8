# mypy: disallow-untyped-calls=False
# (google-cloud-datastore leaves its functions unannotated; see datastore_client.)
"""Task output in the Datastore backend: bytes addressed by run ID and offset.

Output is kept in chunks (server/store/chunks.py), OutputChunk entities
named "<run_id>/<index>"; the Output entity named after the run holds the
size: the end of the furthest write. Chunk keys are computed, never
queried, so reads are lookups. Functions here block: DatastoreStore runs
them in its worker threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.store import chunks
from server.store.chunks import Piece
from server.store.datastore_client import (
    OUTPUT,
    OUTPUT_CHUNK,
    get_multi,
    key,
    make_entity,
    run_transaction,
)

# Chunks per transaction (and per lookup when reading). A commit carries at
# most 10 MiB: 16 chunks of 100 KiB stay far below it, so a large write is
# several transactions, each atomic and each safe to repeat.
CHUNKS_PER_COMMIT = 16


def write(client: Any, run_id: str, offset: int, data: bytes) -> None:
    """Overlays `data` at `offset`, dropping bytes past MAX_OUTPUT_SIZE.

    The size grows to the end of the write, capped at MAX_OUTPUT_SIZE even
    when every byte was dropped, so readers see that output was lost. Each
    group of chunks is a read-modify-write in a transaction, so concurrent
    writes to one chunk never lose each other's bytes.
    """
    end, pieces = chunks.split(offset, data)
    step = CHUNKS_PER_COMMIT
    # Even a write whose bytes were all dropped commits once, to grow the size.
    groups = [pieces[i : i + step] for i in range(0, len(pieces), step)] or [[]]
    for number, group in enumerate(groups, 1):
        group_end = end if number == len(groups) else chunks.end_of(group[-1])
        run_transaction(client, _group_writer(client, run_id, group, group_end))


def read(client: Any, run_id: str, offset: int, length: int) -> bytes:
    """Reads up to `length` bytes at `offset` (-1: to the end); holes read as zeros."""
    wanted = chunks.span(size(client, run_id), offset, length)
    if wanted is None:
        return b""
    found: list[tuple[int, bytes]] = []
    for start in range(wanted.first, wanted.last + 1, CHUNKS_PER_COMMIT):
        indexes = range(start, min(wanted.last + 1, start + CHUNKS_PER_COMMIT))
        entities = get_multi(client, [_chunk_key(client, run_id, i) for i in indexes])
        found.extend(
            (int(str(e.key.name).rsplit("/", 1)[1]), bytes(e["data"])) for e in entities.values()
        )
    return chunks.assemble(wanted, found)


def size(client: Any, run_id: str) -> int:
    """Returns the end of the furthest write, 0 for a run without output."""
    entity = client.get(key(client, OUTPUT, run_id))
    return 0 if entity is None else int(entity["size"])


def _group_writer(client: Any, run_id: str, pieces: list[Piece], end: int) -> Callable[[Any], None]:
    """The transaction work that overlays `pieces` and grows the size to at least `end`."""
    size_key = key(client, OUTPUT, run_id)
    chunk_keys = [_chunk_key(client, run_id, index) for index, _, _ in pieces]

    def work(tx: Any) -> None:
        found = get_multi(client, [size_key, *chunk_keys], tx)
        for (index, start, piece), chunk_key in zip(pieces, chunk_keys, strict=True):
            old = bytes(found[chunk_key]["data"]) if chunk_key in found else b""
            new = chunks.overlay(old, start, piece)
            # Rewriting the same bytes (a retried upload) writes nothing.
            if new != old:
                name = _chunk_name(run_id, index)
                tx.put(make_entity(client, OUTPUT_CHUNK, name, {}, {"data": new}))
        stored = int(found[size_key]["size"]) if size_key in found else 0
        if end > stored:
            tx.put(make_entity(client, OUTPUT, run_id, {}, {"size": end}))

    return work


def _chunk_name(run_id: str, index: int) -> str:
    # Unambiguous even if a run ID held "/": the index is what follows the last one.
    return f"{run_id}/{index}"


def _chunk_key(client: Any, run_id: str, index: int) -> Any:
    return key(client, OUTPUT_CHUNK, _chunk_name(run_id, index))
