"""The bot process: startup, handshake and the poll loop (PROTOCOL.md 3.3, 3.4).

`run()` takes the directory lock, moves a freshly deployed
`swarming_bot.zip` into an update slot, handshakes (retried with jittered
backoff until it works), then polls. Each poll answer is one command:
`sleep`, `run` (`taskrun.py`), `update` and `bot_restart` (`update.py`),
`terminate`, `host_reboot`. Poll failures back off as 1.4^(n-1), and the
same request_uuid is reused until an answer is usable, so the server can
replay a `run` that was lost on the way (T2). Anything unexpected is
reported as a throttled bot_error; the bot itself keeps going. SIGTERM
makes it finish what it is doing, post `bot_shutdown` and exit 0.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import shlex
import signal
import subprocess
import sys
import threading
import uuid
from typing import Any, Dict, Optional

from bot import backoff, dims, runtime, taskrun, update
from bot.context import BotContext, CommandFailed
from bot.remote import RemoteError
from bot.singleton import AlreadyRunning, Singleton

log = logging.getLogger("drover_bot")

REBOOT_CMD_ENV = "DROVER_BOT_REBOOT_CMD"
# After a reboot command succeeded, how long to wait for the host to go down
# before saying it did not (the stock bot waits 15 minutes too).
REBOOT_WAIT = 900.0
EXIT_ALREADY_RUNNING = 3
SHUTDOWN_MESSAGE = "Signal was received"


class Interrupted(BaseException):
    """Raised by the SIGTERM handler to abandon a held poll or a handshake.

    A BaseException so that no `except Exception` on the way swallows it.
    """


def setup_logging(base_dir: str) -> None:
    """Logs to stderr and to logs/bot.log in the bot directory."""
    fmt = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    stream = logging.StreamHandler()
    stream.setFormatter(fmt)
    root.addHandler(stream)
    try:
        os.makedirs(os.path.join(base_dir, "logs"), exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            os.path.join(base_dir, "logs", "bot.log"), maxBytes=5 << 20, backupCount=3
        )
    except OSError as e:
        log.warning("no log file: %s", e)
        return
    handler.setFormatter(fmt)
    root.addHandler(handler)


class Bot:
    """The main loop of one bot process."""

    def __init__(self, ctx: BotContext, lock: Singleton) -> None:
        self.ctx = ctx
        self.updater = update.Updater(ctx, lock)
        self._interruptible = False
        # Why the server keeps the bot idle (quarantine, maintenance), logged once per change.
        self._idle_reason = ""

    def on_signal(self, signum: int, frame: object) -> None:
        """SIGTERM/SIGINT: finish the current step, then shut down."""
        log.info("signal %d received", signum)
        self.ctx.quit.set()
        if self._interruptible:
            self._interruptible = False
            raise Interrupted()

    def _call(self, name: str, body: Dict[str, Any], budget: float) -> Dict[str, Any]:
        """A call the SIGTERM handler may abandon (nothing is lost by it)."""
        self._interruptible = True
        try:
            if self.ctx.quit.is_set():
                raise Interrupted()
            return self.ctx.remote.post_json(name, body, budget=budget)
        finally:
            self._interruptible = False

    def handshake(self) -> bool:
        """Opens a session (retried forever); False if asked to quit first."""
        ctx = self.ctx
        # One session ID for every retry of this handshake (PROTOCOL.md 0.2.3 H6).
        session_id = f"{uuid.uuid4().hex}/{os.getpid()}"
        failures = 0
        while True:
            dimensions, state = ctx.collect()
            body = {
                "dimensions": dimensions,
                "session_id": session_id,
                "state": state,
                "version": ctx.rt.version,
            }
            try:
                answer = self._call("handshake", body, budget=0)
                if answer:
                    break
                log.warning("handshake answered an empty object")
            except RemoteError as e:
                log.warning("handshake failed: %s", e)
            except Interrupted:
                return False
            failures += 1
            if ctx.wait(backoff.handshake_delay(failures)):
                return False
        self.apply_handshake(answer)
        return True

    def apply_handshake(self, answer: Dict[str, Any]) -> None:
        """Takes the hooks script and the bots.cfg dimensions from a handshake answer."""
        ctx = self.ctx
        name = answer.get("bot_config_name")
        ctx.bot_config_name = name if isinstance(name, str) and name else None
        rev = answer.get("bot_config_rev")
        ctx.bot_config_rev = rev if isinstance(rev, str) else None
        script = answer.get("bot_config")
        if isinstance(script, str) and script:
            ctx.hooks.inject(ctx.bot_config_name or "bot_config.py", script)
        group = answer.get("bot_group_cfg")
        server_dims = group.get("dimensions") if isinstance(group, dict) else None
        try:
            ctx.server_dimensions = dims.validate_dimensions(server_dims or {})
        except ValueError as e:
            # Unlike the stock bot (H3), a malformed bots.cfg overlay is not fatal.
            ctx.report_error(f"handshake bot_group_cfg.dimensions ignored: {e}")
        expected = answer.get("bot_version")
        if expected and expected != ctx.rt.version:
            log.warning("the server expects bot version %s; running %s", expected, ctx.rt.version)
        ctx.handshaken = True

    def poll_loop(self) -> int:
        """Polls and obeys until told to stop; returns the process exit code."""
        ctx = self.ctx
        request_uuid: Optional[str] = None
        failures = 0
        while not ctx.quit.is_set():
            try:
                ctx.flush_errors()
                dimensions, state = ctx.collect()
                request_uuid = request_uuid or uuid.uuid4().hex
                body = {
                    "dimensions": dimensions,
                    "request_uuid": request_uuid,
                    "session": ctx.remote.session,
                    "state": state,
                    "version": ctx.rt.version,
                }
                try:
                    answer = self._call("poll", body, budget=0)
                    if not answer:
                        raise RemoteError("poll answered an empty object")
                except RemoteError as e:
                    failures += 1
                    log.warning("poll failed (%d in a row): %s", failures, e)
                    ctx.wait(backoff.poll_delay(failures))
                    continue
                # A usable answer: the next poll is a new request.
                request_uuid = None
                code = self.execute(answer)
                if code is not None:
                    return code
                failures = 0
            except Interrupted:
                break
            except CommandFailed:
                failures += 1
                ctx.wait(backoff.poll_delay(failures))
            except Exception as e:
                failures += 1
                ctx.report_exception("the poll loop", e)
                ctx.wait(backoff.poll_delay(failures))
        self.shutdown(SHUTDOWN_MESSAGE)
        return 0

    def execute(self, answer: Dict[str, Any]) -> Optional[int]:
        """Carries out one poll command; an exit code when the bot must stop."""
        ctx = self.ctx
        cmd = answer.get("cmd")
        if cmd != "update":
            # The server no longer insists on a version that failed to install.
            ctx.clear_quarantine("update")
        if cmd == "sleep":
            duration = answer.get("duration")
            if isinstance(duration, bool) or not isinstance(duration, (int, float)):
                raise ValueError(f"sleep duration must be a number, not {duration!r}")
            reason = str(answer.get("message") or "")
            if reason != self._idle_reason:
                self._idle_reason = reason
                if reason:
                    log.warning("the server gives this bot no task: %s", reason)
            ctx.sleep_streak += 1
            self.updater.refresh_lkgbc()
            ctx.wait(float(duration))
        elif cmd == "run":
            manifest = answer.get("manifest")
            if not isinstance(manifest, dict):
                raise ValueError(f"run without a manifest: {sorted(answer)}")
            ctx.sleep_streak = 0
            taskrun.run_task(ctx, manifest)
            self.updater.refresh_lkgbc()
        elif cmd == "update":
            self.updater.update(_field(answer, "version"))
        elif cmd == "bot_restart":
            self.updater.restart(str(answer.get("message") or "bot_restart"))
        elif cmd == "terminate":
            return self.terminate(_field(answer, "task_id"))
        elif cmd in ("host_reboot", "restart"):
            self.reboot(str(answer.get("message") or ""))
        else:
            raise ValueError(f"unknown poll command {cmd!r}")
        return None

    def terminate(self, task_id: str) -> int:
        """Acks the termination task, then exits (even if the ack fails, L3)."""
        body = {"duration": 0, "exit_code": 0, "id": self.ctx.bot_id, "task_id": task_id}
        body["session"] = self.ctx.remote.session
        try:
            self.ctx.remote.post_json(f"task_update/{task_id}", body)
        except RemoteError as e:
            log.error("could not ack termination task %s: %s", task_id, e)
        self.shutdown(f"Terminated by the server (task {task_id})")
        return 0

    def reboot(self, message: str) -> None:
        """Runs the operator's reboot command, if there is one; never reboots on its own."""
        ctx = self.ctx
        ctx.post_event("bot_rebooting", message)
        command = os.environ.get(REBOOT_CMD_ENV, "")
        if not command:
            ctx.report_error(f"Host reboot requested ({message}) but reboot not configured")
            return
        try:
            result = subprocess.run(shlex.split(command), stdin=subprocess.DEVNULL, check=False)
        except OSError as e:
            ctx.report_error(f"Reboot command {command!r} failed: {e}")
            return
        if result.returncode != 0:
            ctx.report_error(f"Reboot command {command!r} exited with {result.returncode}")
            return
        if not ctx.wait(REBOOT_WAIT):
            ctx.report_error(f"Host did not reboot within {REBOOT_WAIT:g}s")

    def shutdown(self, message: str) -> None:
        """Tells the server this bot is going away."""
        log.info("shutting down: %s", message)
        self.ctx.post_event("bot_shutdown", message)


def _field(answer: Dict[str, Any], key: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"poll command {answer.get('cmd')!r} without {key}")
    return value


def run(rt: runtime.Runtime) -> int:
    """`start_bot`: runs the bot until it is told to stop; the exit code."""
    os.chdir(rt.base_dir)
    lock = Singleton(rt.base_dir)
    try:
        lock.acquire()
    except AlreadyRunning as e:
        print(f"drover_bot: refusing to start: {e}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    if rt.zip_path is not None and os.path.basename(rt.zip_path) == runtime.LKGBC_NAME:
        update.start_from_slot(rt, lock)
    setup_logging(rt.base_dir)
    taskrun.clean_work_dir(rt.base_dir)
    log.info("starting bot %s from %s for %s", rt.version, rt.zip_path or rt.source_root, rt.server)
    ctx = BotContext(rt, threading.Event())
    bot = Bot(ctx, lock)
    signal.signal(signal.SIGTERM, bot.on_signal)
    signal.signal(signal.SIGINT, bot.on_signal)
    ctx.remote.ping()
    try:
        if not bot.handshake():
            bot.shutdown(SHUTDOWN_MESSAGE)
            return 0
        return bot.poll_loop()
    finally:
        lock.release()
