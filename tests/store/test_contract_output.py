"""The Store contract for task output (write_output, read_output, output_size), on every backend."""

from __future__ import annotations

from server.store.base import MAX_OUTPUT_SIZE, OUTPUT_CHUNK_SIZE, Store


async def test_output_round_trip(store: Store) -> None:
    """Written output reads back whole and by range."""
    await store.write_output("r1", 0, b"hello ")
    await store.write_output("r1", 6, b"world")
    assert await store.read_output("r1") == b"hello world"
    assert await store.read_output("r1", 6) == b"world"
    assert await store.read_output("r1", 2, 3) == b"llo"
    assert await store.read_output("r1", 100) == b""
    assert await store.output_size("r1") == 11


async def test_output_unknown_run(store: Store) -> None:
    """A run without output has size 0 and reads empty."""
    assert await store.output_size("none") == 0
    assert await store.read_output("none") == b""


async def test_output_across_chunks(store: Store) -> None:
    """A write straddling chunk boundaries reads back intact."""
    data = bytes(range(256)) * (3 * OUTPUT_CHUNK_SIZE // 256)
    offset = OUTPUT_CHUNK_SIZE - 7
    await store.write_output("r1", offset, data)
    assert await store.output_size("r1") == offset + len(data)
    assert await store.read_output("r1", offset) == data
    assert await store.read_output("r1", OUTPUT_CHUNK_SIZE - 2, 4) == data[5:9]


async def test_output_rewrite_is_idempotent(store: Store) -> None:
    """Writing the same bytes at the same offset again changes nothing."""
    await store.write_output("r1", 0, b"abcdef")
    await store.write_output("r1", 2, b"cd")
    await store.write_output("r1", 0, b"abcdef")
    assert await store.read_output("r1") == b"abcdef"
    assert await store.output_size("r1") == 6


async def test_output_overwrite_inside(store: Store) -> None:
    """A write inside existing output replaces just its bytes."""
    await store.write_output("r1", 0, b"aaaaaa")
    await store.write_output("r1", 2, b"XY")
    assert await store.read_output("r1") == b"aaXYaa"


async def test_output_holes_read_as_zeros(store: Store) -> None:
    """Bytes never written, even whole chunks, read as zeros."""
    far = 2 * OUTPUT_CHUNK_SIZE + 10
    await store.write_output("r1", 3, b"x")
    await store.write_output("r1", far, b"end")
    assert await store.output_size("r1") == far + 3
    out = await store.read_output("r1")
    assert out == b"\0\0\0x" + bytes(far - 4) + b"end"


async def test_output_size_is_furthest_end(store: Store) -> None:
    """An earlier write after a later one does not shrink the size."""
    await store.write_output("r1", 10, b"late")
    await store.write_output("r1", 0, b"ab")
    assert await store.output_size("r1") == 14
    assert await store.read_output("r1") == b"ab" + bytes(8) + b"late"


async def test_output_capped(store: Store) -> None:
    """Bytes past MAX_OUTPUT_SIZE are dropped and the size stops there."""
    await store.write_output("r1", MAX_OUTPUT_SIZE - 3, b"abcdef")
    assert await store.output_size("r1") == MAX_OUTPUT_SIZE
    assert await store.read_output("r1", MAX_OUTPUT_SIZE - 3) == b"abc"
    await store.write_output("r1", MAX_OUTPUT_SIZE + 5, b"gone")
    assert await store.output_size("r1") == MAX_OUTPUT_SIZE


async def test_outputs_are_per_run(store: Store) -> None:
    """Runs' outputs are independent of each other."""
    await store.write_output("r1", 0, b"one")
    await store.write_output("r2", 0, b"two!")
    assert await store.read_output("r1") == b"one"
    assert await store.read_output("r2") == b"two!"
