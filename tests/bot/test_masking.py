"""Masking of the task's tokens in its output (bot/stream.py)."""

from __future__ import annotations

from bot.stream import MASK, OutputStream

TOKEN = b"drt_eyJzdWIiOiJjaUBleGFtcGxlLmNvbSJ9.c2lnbmF0dXJl"


def drain(stream: OutputStream, chunk: int) -> bytes:
    """Takes and acknowledges chunks of at most `chunk` bytes until nothing is ready."""
    sent = bytearray()
    start, _ = stream.peek(0)
    while True:
        offset, data = stream.peek(chunk)
        if not data:
            return bytes(sent)
        assert offset == start + len(sent)
        sent += data
        stream.ack(offset, len(data))


def test_a_token_in_the_output_is_masked() -> None:
    """Every occurrence of a secret is replaced before it is sent."""
    stream = OutputStream()
    stream.add_secret(TOKEN)
    stream.append(b"token=" + TOKEN + b"\nagain " + TOKEN + b"\n")
    assert drain(stream, 1000) == b"token=" + MASK + b"\nagain " + MASK + b"\n"


def test_a_token_split_across_reads_is_masked() -> None:
    """A token arriving in two appends, the first half sent alone, is still masked."""
    stream = OutputStream()
    stream.add_secret(TOKEN)
    stream.append(b"before " + TOKEN[:20])
    first = drain(stream, 1000)
    assert first == b"before "
    assert stream.pending() == 0
    stream.append(TOKEN[20:] + b" after\n")
    assert first + drain(stream, 1000) == b"before " + MASK + b" after\n"


def test_a_token_across_a_chunk_boundary_is_masked() -> None:
    """Small chunks never cut a token in two: the whole output reads masked."""
    stream = OutputStream()
    stream.add_secret(TOKEN)
    data = b"x" * 7 + TOKEN + b"y" * 5 + TOKEN
    for i in range(0, len(data), 3):
        stream.append(data[i : i + 3])
    stream.flush()
    assert drain(stream, 4) == b"x" * 7 + MASK + b"y" * 5 + MASK


def test_a_prefix_that_never_becomes_a_token_is_sent_at_the_end() -> None:
    """Bytes held back as a possible token start go out with the final flush, unchanged."""
    stream = OutputStream()
    stream.add_secret(TOKEN)
    stream.append(b"ends with drt_ey")
    assert drain(stream, 1000) == b"ends with "
    stream.flush()
    assert drain(stream, 1000) == b"drt_ey"


def test_a_secret_added_later_masks_output_not_sent_yet() -> None:
    """A secret registered after its bytes were buffered is still masked in them."""
    stream = OutputStream()
    stream.append(b"a " + TOKEN + b" b")
    stream.add_secret(TOKEN)
    assert drain(stream, 1000) == b"a " + MASK + b" b"


def test_a_resent_chunk_holds_the_same_bytes() -> None:
    """Peeking again before the ack (a failed update) gives the same chunk."""
    stream = OutputStream()
    stream.add_secret(TOKEN)
    stream.append(b"one " + TOKEN + b" two ")
    first = stream.peek(1000)
    stream.append(TOKEN[:10])
    assert stream.peek(1000) == first


def test_without_secrets_nothing_is_held() -> None:
    """A stream with no secrets sends every byte as it came."""
    stream = OutputStream()
    stream.append(b"drt_ and eyJ are just text here")
    assert stream.pending() == len(b"drt_ and eyJ are just text here")
