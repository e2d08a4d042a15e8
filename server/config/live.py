"""The live config: the current snapshot, reloaded when the files change or on SIGHUP.

The app factory creates one `LiveConfig`, hands it to every service (they read
`.current` once per request) and runs `watch()` in the background. An invalid
edit never replaces a working config: it is logged at ERROR, kept in
`.error` for the API and UI, and the previous snapshot keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import signal
from collections.abc import Callable

from server.clock import Clock, SystemClock
from server.config import loader
from server.config.model import ConfigSnapshot
from server.config.validation import ConfigInvalid

log = logging.getLogger(__name__)

# How often `watch` stats the files by default. Edits reach bots within about
# this long (plus their next poll); a stat of a handful of files is cheap.
DEFAULT_POLL_SECS = 1.0

Subscriber = Callable[[ConfigSnapshot], None]
# Per watched path: (inode, size, mtime in ns, ctime in ns), or None when missing.
# The inode catches editors that replace a file by renaming a new one over it.
_Stat = tuple[int, int, int, int] | None
_Signature = tuple[tuple[str, _Stat], ...]


class LiveConfig:
    """Holds the current config snapshot and swaps it atomically on a valid edit."""

    def __init__(self, config_dir: str | os.PathLike[str], *, clock: Clock | None = None) -> None:
        """Loads the config; raises ConfigInvalid when it is invalid.

        Loudly, because a server must not start on a config it cannot explain.
        """
        self._dir = pathlib.Path(config_dir)
        self._clock = clock or SystemClock()
        self._subscribers: list[Subscriber] = []
        self._error = ""
        self._reload_errors = 0
        self._archives: tuple[pathlib.Path, ...] = ()
        self._signature: _Signature = ()
        self._current = loader.snapshot_of(self._read(), clock=self._clock)

    @property
    def current(self) -> ConfigSnapshot:
        """The snapshot to use; take it once per request."""
        return self._current

    @property
    def error(self) -> str:
        """Why the latest files were refused; empty when they are in use."""
        return self._error

    @property
    def reload_errors(self) -> int:
        """How many reloads failed since the config was loaded (for /metrics).

        Each refusal of an invalid set counts, and so does a check or a
        SIGHUP reload that raised (a bug, logged with its traceback).
        """
        return self._reload_errors

    @property
    def config_dir(self) -> pathlib.Path:
        """The directory the config is read from."""
        return self._dir

    def subscribe(self, callback: Subscriber) -> None:
        """Calls `callback(snapshot)` after each new revision is adopted."""
        self._subscribers.append(callback)

    def reload(self) -> bool:
        """Reads the files again; True when a new revision was adopted.

        An invalid set keeps the current snapshot and sets `.error`.
        """
        read = self._read()
        try:
            if read.revision == self._current.revision:
                self._error = ""
                return False
            snapshot = loader.snapshot_of(read, clock=self._clock)
        except ConfigInvalid as e:
            self._error = str(e)
            self._reload_errors += 1
            log.error(
                "config edit in %s refused, still serving revision %s: %s",
                self._dir,
                self._current.revision[:12],
                e,
            )
            return False
        self._current = snapshot
        self._error = ""
        log.info("config revision %s adopted from %s", snapshot.revision[:12], self._dir)
        for callback in list(self._subscribers):
            # One broken subscriber must not keep the others on the old config.
            try:
                callback(snapshot)
            except Exception:
                log.exception("config subscriber %r failed on %s", callback, snapshot.revision)
        return True

    def check_once(self) -> bool:
        """Reloads if any watched file changed since the last look; True on a new revision."""
        if self._stat() == self._signature:
            return False
        return self.reload()

    async def watch(self, interval: float = DEFAULT_POLL_SECS) -> None:
        """Checks the files every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.check_once()
            except Exception:
                # A bug in loading must not stop live reload for good.
                self._reload_errors += 1
                log.exception("config check of %s failed", self._dir)

    def install_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        """Makes SIGHUP reload the config (Unix only; raises NotImplementedError elsewhere)."""
        loop.add_signal_handler(_sighup(), self._on_sighup)

    def remove_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        """Undoes `install_sighup`."""
        loop.remove_signal_handler(_sighup())

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading config from %s", self._dir)
        try:
            self.reload()
        except Exception:
            self._reload_errors += 1
            log.exception("config reload of %s failed", self._dir)

    def _read(self) -> loader.ConfigRead:
        # Stat before reading, so an edit landing during the read is seen next time.
        self._signature = self._stat()
        read = loader.read_config(self._dir)
        if read.archive_paths != self._archives:
            # Archives are known only after a read: make the next check stat them.
            self._archives = read.archive_paths
            self._signature = ()
        return read

    def _watched_paths(self) -> list[pathlib.Path]:
        scripts = self._dir / loader.SCRIPTS_DIR
        return [
            *(self._dir / name for name in loader.FIXED_FILES),
            scripts,  # its mtime moves when a script is added or removed
            *sorted(scripts.glob("*.py")),
            *self._archives,
        ]

    def _stat(self) -> _Signature:
        entries: list[tuple[str, _Stat]] = []
        for path in self._watched_paths():
            try:
                st = path.stat()
            except OSError:
                entries.append((str(path), None))
            else:
                entries.append((str(path), (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)))
        return tuple(entries)


def _sighup() -> int:
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None:
        raise NotImplementedError("this platform has no SIGHUP")
    return int(sighup)
