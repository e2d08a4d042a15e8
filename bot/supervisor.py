"""Watches a task's process group: timeouts, stop requests, pause, SIGTERM then SIGKILL.

Runs in its own thread so that a slow `task_update` (the HTTP client may
retry for minutes) never delays a timeout. The command runs in its own
session (`start_new_session=True`), so its process ID is its process group
ID and one `killpg` reaches every process it started, grandchildren
included (PROTOCOL.md 3.9). On Linux the runner is also a child subreaper,
so it can wait until those processes are really gone (reaped).

Pause (DESIGN.md 5, our bot only) is SIGSTOP on the group, resume SIGCONT.
While paused neither timeout runs: the paused time is added to the hard
deadline, and the I/O clock restarts on resume. A stop while paused sends
SIGTERM then SIGCONT, so the processes can act on it within the grace
period. A process that left the group (its own `setsid`) is not paused.
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
from typing import Callable, Optional, Tuple

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
        # What the server asked for, applied by this thread on its next tick
        # so that every signal to the group comes from one thread, in order.
        self._want_paused = False
        # (seconds paused before the current pause, when it began or None),
        # replaced as a whole so that other threads read a consistent pair.
        self._pause_clock: Tuple[float, Optional[float]] = (0.0, None)
        self._resumed_at = self.started

    @property
    def pgid(self) -> int:
        """The command's process group ID (its own PID: it leads a new session)."""
        return self._proc.pid

    def request_stop(self, reason: str) -> None:
        """Asks for the group to be stopped (server must_stop, bot shutdown...)."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason

    def set_paused(self, paused: bool) -> None:
        """Asks for the group to be paused (SIGSTOP) or resumed (SIGCONT) on the next tick."""
        with self._lock:
            self._want_paused = paused

    @property
    def is_paused(self) -> bool:
        """True while the group is stopped by a pause."""
        return self._pause_clock[1] is not None

    def paused_for(self, now: float) -> float:
        """Seconds spent paused so far, the current pause included."""
        before, since = self._pause_clock
        return before + (now - since if since is not None else 0.0)

    def run(self) -> None:
        while True:
            try:
                self._proc.wait(timeout=TICK)
            except subprocess.TimeoutExpired:
                self.check(self._clock())
                continue
            self.exited_at = self._clock()
            self._stream.wake()
            return

    def check(self, now: float) -> None:
        """One tick: enforces timeouts, stops and pauses as of `now` (the thread calls it)."""
        if self._kill_deadline is None:
            with self._lock:
                stop = self._stop_reason
                want_paused = self._want_paused
            paused = self.is_paused
            ran = now - self.started - self.paused_for(now)
            if not paused and self._hard > 0 and ran >= self._hard:
                self.hard_timeout = True
                self._terminate(now, f"hard timeout ({self._hard:g}s)")
            elif (
                not paused
                and self._io > 0
                and now - max(self._stream.last_output, self._resumed_at) >= self._io
            ):
                self.io_timeout = True
                self._terminate(now, f"I/O timeout ({self._io:g}s without output)")
            elif stop is not None:
                self._terminate(now, stop)
            elif want_paused and not paused:
                self._pause_group(now)
            elif paused and not want_paused:
                self._resume_group(now)
        elif not self._killed and now >= self._kill_deadline:
            log.warning("process group %d outlived its grace period: SIGKILL", self.pgid)
            kill_group(self.pgid, signal.SIGKILL)
            self._killed = True

    def _pause_group(self, now: float) -> None:
        log.info("pausing process group %d", self.pgid)
        kill_group(self.pgid, signal.SIGSTOP)
        self._pause_clock = (self._pause_clock[0], now)

    def _resume_group(self, now: float) -> None:
        log.info("resuming process group %d", self.pgid)
        kill_group(self.pgid, signal.SIGCONT)
        self._pause_clock = (self.paused_for(now), None)
        # A stopped process writes nothing: the I/O clock starts again here.
        self._resumed_at = now

    def _terminate(self, now: float, reason: str) -> None:
        log.info("stopping process group %d: %s", self.pgid, reason)
        kill_group(self.pgid, signal.SIGTERM)
        if self.is_paused:
            # A stopped process cannot handle SIGTERM until it is continued.
            self._resume_group(now)
        self._kill_deadline = now + self._grace
