"""Self-update, restart, and the last known good bot code (PROTOCOL.md 2.3).

An `update` downloads the requested archive into whichever update slot
(`swarming_bot.1.zip` / `.2.zip`) is not running, checks that its content
digest is the version asked for (the stock bot does not, A2), runs its
`is_fine`, and only then execs it. A version that failed is not tried again
for a while: the server keeps answering `update`, and retrying at once would
hammer it. The failure quarantines the bot only while it lasts (not until a
restart, as the stock bot does, A3). Once a version has polled or run a task
it becomes the last known good copy, `swarming_bot.zip`, which is what the
host starts after a reboot.
"""

from __future__ import annotations

import filecmp
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from typing import Dict, List, NoReturn, Optional, Tuple

from bot import archive, runtime
from bot.context import BotContext, CommandFailed
from bot.remote import RemoteError
from bot.singleton import Singleton

log = logging.getLogger("drover_bot.update")

# How long a version that failed to install is left alone.
FAILED_VERSION_HOLD = 300.0
# Longest single wait while holding off: the bot keeps polling meanwhile, so
# the server still sees it alive and can change its mind (then the
# quarantine is lifted at the next answer that is not this update).
HOLD_POLL = 15.0
IS_FINE_TIMEOUT = 120.0
VERSION_RE = re.compile(r"[0-9a-f]{40,64}")


class UpdateError(Exception):
    """The new bot code could not be installed."""


def next_slot(base_dir: str, running_zip: Optional[str]) -> str:
    """The update slot the bot is not running from."""
    name = os.path.basename(running_zip or "")
    other = runtime.SLOT_NAMES[1] if name == runtime.SLOT_NAMES[0] else runtime.SLOT_NAMES[0]
    return os.path.join(base_dir, other)


def is_fine(cmd: List[str], cwd: str) -> Tuple[bool, str]:
    """Runs an `is_fine` command line; (passed, the end of its output)."""
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=IS_FINE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, repr(e)
    output = proc.stdout.decode("utf-8", "replace")[-1000:]
    return proc.returncode == 0, f"exit code {proc.returncode}: {output}"


def _copy(src: str, dst: str) -> None:
    """Copies through a temporary file so `dst` is never half written."""
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def exec_bot(cmd: List[str], lock: Singleton) -> NoReturn:
    """Replaces this process with `cmd` (same PID, so service managers keep tracking it)."""
    log.info("exec %s", " ".join(cmd))
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    lock.release()
    os.execv(cmd[0], cmd)


def start_from_slot(rt: runtime.Runtime, lock: Singleton) -> NoReturn:
    """Started as swarming_bot.zip: run from a slot copy so updates can replace files."""
    assert rt.zip_path is not None
    target = os.path.join(rt.base_dir, runtime.SLOT_NAMES[0])
    _copy(rt.zip_path, target)
    exec_bot(rt.command_for_zip(target, "start_bot"), lock)


class Updater:
    """Carries out `update` and `bot_restart`, and keeps the LKGBC copy current."""

    def __init__(self, ctx: BotContext, lock: Singleton) -> None:
        self._ctx = ctx
        self._lock = lock
        self._failed: Dict[str, float] = {}
        self._lkgbc_done = False

    def update(self, version: str) -> None:
        """Installs and execs `version`; returns only if that is not possible now."""
        ctx = self._ctx
        held_until = self._failed.get(version, 0.0)
        now = time.monotonic()
        if now < held_until:
            log.info("version %s failed recently; holding off", version)
            ctx.wait(min(held_until - now, HOLD_POLL))
            return
        try:
            slot = self._install(version)
        except UpdateError as e:
            self._failed[version] = time.monotonic() + FAILED_VERSION_HOLD
            ctx.set_quarantine("update", f"Failed to self-update the bot: {e}")
            ctx.report_error(str(e))
            return
        if ctx.quit.is_set():
            return  # SIGTERM meanwhile: stop rather than start the new code.
        ctx.post_event("bot_shutdown", f"About to restart: Updating to {version}")
        exec_bot(ctx.rt.command_for_zip(slot, "start_bot"), self._lock)

    def _install(self, version: str) -> str:
        """Downloads, verifies and checks `version`; returns its slot path."""
        ctx = self._ctx
        if not VERSION_RE.fullmatch(version):
            raise UpdateError(f"Refusing to update to {version!r}: not a bot code digest")
        if version == ctx.rt.version:
            raise UpdateError(f"Asked to update to {version}, the version already running")
        slot = next_slot(ctx.rt.base_dir, ctx.rt.zip_path)
        try:
            data = ctx.remote.get_bot_code(version)
        except RemoteError as e:
            raise UpdateError(f"Unable to download bot code {version}: {e}") from e
        tmp = slot + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            digest = archive.digest_of_zip(tmp)
        except (zipfile.BadZipFile, OSError) as e:
            os.remove(tmp)
            raise UpdateError(f"Downloaded bot code {version} is not a zip: {e}") from e
        if digest != version:
            os.remove(tmp)
            raise UpdateError(
                f"Downloaded bot code has digest {digest}, not the requested {version}"
            )
        os.replace(tmp, slot)
        ok, output = is_fine(ctx.rt.command_for_zip(slot, "is_fine"), ctx.rt.base_dir)
        if not ok:
            os.remove(slot)
            raise UpdateError(f"New bot code is bad ({version}): {output}")
        return slot

    def restart(self, message: str) -> None:
        """Re-execs the running code after checking it still works."""
        ctx = self._ctx
        ok, output = is_fine(ctx.rt.command("is_fine"), ctx.rt.base_dir)
        if not ok:
            ctx.report_error(f"Failed to restart, the bot code is bad: {output}")
            raise CommandFailed("bot_restart")
        if ctx.quit.is_set():
            return
        ctx.post_event("bot_shutdown", f"About to restart: {message}")
        exec_bot(ctx.rt.command("start_bot"), self._lock)

    def refresh_lkgbc(self) -> None:
        """Makes swarming_bot.zip the running code, once it has proved itself."""
        rt = self._ctx.rt
        if self._lkgbc_done or rt.zip_path is None:
            return
        target = os.path.join(rt.base_dir, runtime.LKGBC_NAME)
        try:
            if not (os.path.isfile(target) and filecmp.cmp(rt.zip_path, target, shallow=False)):
                log.info("updating %s to the running code", target)
                _copy(rt.zip_path, target)
        except OSError as e:
            log.warning("could not update %s: %s", target, e)
            return
        self._lkgbc_done = True
