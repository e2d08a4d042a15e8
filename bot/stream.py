"""A task's merged output, buffered until the server has acknowledged it.

The task's stdout+stderr pipe is drained by a reader thread into a buffer
whose first byte sits at `offset`, the number of bytes the server already
has. A `task_update` sends a prefix of the buffer at that offset and only
an acknowledged update drops it, so a failed update is resent at the same
offset with nothing lost (PROTOCOL.md 0.2.7 U2). The reader records when
output last arrived, which is what the I/O timeout measures.

Secrets the bot handed to the task (its tokens, `add_secret`) never leave
in the output: every occurrence in the buffer is replaced by MASK before a
chunk is taken, and a chunk never ends inside what could be the start of a
secret (those bytes wait for the next read or the end of the stream), so a
token split across two reads or two chunks is masked all the same.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, List, Tuple

# A task that writes faster than the server accepts is paused (its pipe
# fills) instead of growing the bot's memory without bound.
MAX_BUFFER = 16 << 20
READ_SIZE = 64 << 10
# What a secret in the output becomes; "[" and "]" occur in no token, so a
# mask can never join its neighbours into one.
MASK = b"[masked]"


class OutputStream:
    """Output not yet acknowledged by the server, and when output last came."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_buffer: int = MAX_BUFFER
    ) -> None:
        self._clock = clock
        self._max = max_buffer
        self._cond = threading.Condition()
        self._buf = bytearray()
        self._offset = 0
        self._eof = False
        self._woken = False
        self.last_output = clock()
        # Longest first, so a secret inside another is never masked alone.
        self._secrets: List[bytes] = []
        # How far from the buffer's start secrets have been looked for.
        self._scanned = 0
        # Set once the caller sends what is left, whatever it ends with.
        self._flushing = False

    def add_secret(self, secret: bytes) -> None:
        """Masks `secret` wherever it appears in output not sent yet, and from now on."""
        if not secret:
            return
        with self._cond:
            if secret not in self._secrets:
                self._secrets.append(secret)
                self._secrets.sort(key=len, reverse=True)
                self._scanned = 0

    def flush(self) -> None:
        """Lets the last chunk end with bytes that could start a secret (the final report)."""
        with self._cond:
            self._flushing = True

    def pending(self) -> int:
        """Bytes received, not acknowledged yet, and ready to send."""
        with self._cond:
            self._mask()
            return len(self._buf) - self._held()

    def append(self, data: bytes) -> None:
        """Adds output (from the reader, or the runner's own messages)."""
        if not data:
            return
        with self._cond:
            self._buf.extend(data)
            self.last_output = self._clock()
            self._cond.notify_all()

    def peek(self, limit: int) -> Tuple[int, bytes]:
        """(offset, up to `limit` masked bytes) of the next chunk to send.

        A chunk peeked again before its ack holds the same bytes: masking
        only changes bytes past what could have been taken.
        """
        with self._cond:
            self._mask()
            ready = len(self._buf) - self._held()
            return self._offset, bytes(self._buf[: min(limit, ready)])

    def ack(self, offset: int, size: int) -> None:
        """Drops `size` bytes sent at `offset`, once the server has them."""
        with self._cond:
            if offset != self._offset:
                raise ValueError(f"ack at {offset}, expected {self._offset}")
            del self._buf[:size]
            self._offset += size
            self._scanned = max(0, self._scanned - size)
            self._cond.notify_all()

    def _mask(self) -> None:
        """Replaces the secrets in the part of the buffer not scanned yet (lock held)."""
        if not self._secrets:
            return
        buf = self._buf
        # A secret may have started in the scanned part and ended past it.
        start = max(0, self._scanned - len(self._secrets[0]) + 1)
        for secret in self._secrets:
            at = buf.find(secret, start)
            while at != -1:
                buf[at : at + len(secret)] = MASK
                at = buf.find(secret, at + len(MASK))
        self._scanned = len(buf)

    def _held(self) -> int:
        """How many bytes at the buffer's end could be the start of a secret (lock held)."""
        if self._flushing or self._eof or not self._secrets:
            return 0
        buf = self._buf
        held = 0
        for secret in self._secrets:
            first = secret[:1]
            at = buf.find(first, max(0, len(buf) - len(secret) + 1))
            while at != -1 and len(buf) - at > held:
                if secret.startswith(bytes(buf[at:])):
                    held = len(buf) - at
                    break
                at = buf.find(first, at + 1)
        return held

    def wait(self, threshold: int, timeout: float) -> None:
        """Returns once `threshold` bytes are pending, `wake` was called, or `timeout` passed.

        End of file does not end the wait: a task may close its output and
        keep running, and the caller must not spin meanwhile.
        """
        with self._cond:
            self._cond.wait_for(lambda: len(self._buf) >= threshold or self._woken, timeout)

    def wait_eof(self, timeout: float) -> bool:
        """Waits for the pipe to close; True if it did."""
        with self._cond:
            return self._cond.wait_for(lambda: self._eof, timeout)

    def wake(self) -> None:
        """Ends current and future `wait`s early (the process exited)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def pump(self, fd: int) -> None:
        """Reads `fd` until end of file (the reader thread's body)."""
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: len(self._buf) < self._max)
                data = os.read(fd, READ_SIZE)
                if not data:
                    break
                self.append(data)
        except OSError:
            pass
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def start_reader(self, fd: int) -> threading.Thread:
        """Starts draining `fd` in a daemon thread (a task's orphan holding
        the pipe open must not keep the runner alive)."""
        thread = threading.Thread(target=self.pump, args=(fd,), name="output-reader", daemon=True)
        thread.start()
        return thread


def chunk_ready(
    pending: int,
    now: float,
    last_send: float,
    chunk_size: int,
    output_interval: float,
    heartbeat: float,
) -> bool:
    """Whether to send a task_update now (PROTOCOL.md 3.8 cadence)."""
    if pending >= chunk_size:
        return True
    if pending and now - last_send >= output_interval:
        return True
    return now - last_send >= heartbeat
