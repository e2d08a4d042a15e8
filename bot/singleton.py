"""One bot per working directory: an exclusive lock on `swarming.lck`.

Two bots in one directory would delete each other's task files and fight
over the update slots. The lock is an `fcntl.flock` held for the life of the
process (the kernel drops it when the process dies, so a crash never leaves
a stale lock); it is released explicitly before exec'ing new bot code, and
the new process takes it again. POSIX only, like the rest of the bot.
"""

from __future__ import annotations

import fcntl
import os
from typing import Optional

LOCK_NAME = "swarming.lck"


class AlreadyRunning(Exception):
    """Another bot already runs in this directory."""


class Singleton:
    """The lock file of one bot directory."""

    def __init__(self, base_dir: str) -> None:
        self.path = os.path.join(base_dir, LOCK_NAME)
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        """Takes the lock or raises AlreadyRunning naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"another bot (pid {holder}) is already running in {os.path.dirname(self.path)}"
            ) from e
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        """Drops the lock (closing the file releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
