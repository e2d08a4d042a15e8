"""Watches a task's process group: timeouts, stop requests, SIGTERM then SIGKILL.

Runs in its own thread so that a slow `task_update` (the HTTP client may
retry for minutes) never delays a timeout. The command runs in its own
session (`start_new_session=True`), so its process ID is its process group
ID and one `killpg` reaches every process it started, grandchildren
included (PROTOCOL.md 3.9). On Linux the runner is also a child subreaper,
so it can wait until those processes are really gone (reaped).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

from bot.stream import OutputStream

log = logging.getLogger("drover_bot.supervisor")

TICK = 0.05


# Linux prctl option: orphaned descendants are re-parented to this process
# instead of init, so the runner can reap (and so account for) all of them.
PR_SET_CHILD_SUBREAPER = 36


def kill_group(pgid: int, sig: int) -> None:
    """Signals a whole process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def become_subreaper() -> bool:
    """Makes the task's orphans this process's children (Linux); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _reap_children() -> None:
    """Collects every child that has exited (orphans of the task, as a subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_group(pgid: int, timeout: float) -> bool:
    """SIGKILLs the group and waits until none of it is left; True if it is gone.

    A dead process still counts until its parent reaps it: as a subreaper
    the runner reaps the task's orphans itself, so "gone" really means gone
    by the time the completion is reported.
    """
    kill_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        _reap_children()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


class Supervisor(threading.Thread):
    """Enforces hard and I/O timeouts and stop requests on one process group."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stream: OutputStream,
        *,
        hard_timeout: float,
        io_timeout: float,
        grace_period: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="supervisor", daemon=True)
        self._proc = proc
        self._stream = stream
        self._hard = hard_timeout
        self._io = io_timeout
        self._grace = grace_period
        self._clock = clock
        self._lock = threading.Lock()
        self._stop_reason: Optional[str] = None
        self.started = clock()
        self.exited_at: Optional[float] = None
        self.hard_timeout = False
        self.io_timeout = False
        self._kill_deadline: Optional[float] = None
        self._killed = False

    @property
    def pgid(self) -> int:
        """The command's process group ID (its own PID: it leads a new session)."""
        return self._proc.pid

    def request_stop(self, reason: str) -> None:
        """Asks for the group to be stopped (server must_stop, bot shutdown...)."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason

    def run(self) -> None:
        while True:
            try:
                self._proc.wait(timeout=TICK)
            except subprocess.TimeoutExpired:
                self._check(self._clock())
                continue
            self.exited_at = self._clock()
            self._stream.wake()
            return

    def _check(self, now: float) -> None:
        if self._kill_deadline is None:
            with self._lock:
                stop = self._stop_reason
            if self._hard > 0 and now - self.started >= self._hard:
                self.hard_timeout = True
                self._terminate(now, f"hard timeout ({self._hard:g}s)")
            elif self._io > 0 and now - self._stream.last_output >= self._io:
                self.io_timeout = True
                self._terminate(now, f"I/O timeout ({self._io:g}s without output)")
            elif stop is not None:
                self._terminate(now, stop)
        elif not self._killed and now >= self._kill_deadline:
            log.warning("process group %d outlived its grace period: SIGKILL", self.pgid)
            kill_group(self.pgid, signal.SIGKILL)
            self._killed = True

    def _terminate(self, now: float, reason: str) -> None:
        log.info("stopping process group %d: %s", self.pgid, reason)
        kill_group(self.pgid, signal.SIGTERM)
        self._kill_deadline = now + self._grace
