"""The live bot: identity, hooks, server connection, and what it reports.

One `BotContext` exists per bot process. The main loop, the task launcher
and the updater all go through it to compute dimensions and state (hooks
first, then the bots.cfg overlay from the handshake, then quarantine
reasons), to post events, and to wait in a way that a SIGTERM interrupts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

from bot import backoff, dims
from bot.hooks import BotInfo, Hooks
from bot.remote import Remote, RemoteError
from bot.runtime import Runtime

log = logging.getLogger("drover_bot")

# Events are best effort: a bot that is shutting down or already failing
# must not spend the full four-minute retry budget on telling the server.
EVENT_BUDGET = 30.0


class CommandFailed(Exception):
    """A poll command failed and was already reported; the loop only backs off."""


class BotContext:
    """Everything the bot knows about itself while it runs."""

    def __init__(self, rt: Runtime, quit_event: Optional[threading.Event] = None) -> None:
        self.rt = rt
        self.quit = quit_event or threading.Event()
        self.bot_id = dims.bot_id()
        # Tasks and hooks see the same ID the bot reports (PROTOCOL.md 3.3).
        os.environ["SWARMING_BOT_ID"] = self.bot_id
        self.started_ts = time.time()
        self.sleep_streak = 0
        self.hooks = Hooks(rt.base_hooks)
        self.info = BotInfo(
            id=self.bot_id, base_dir=rt.base_dir, server=rt.server, version=rt.version
        )
        self.remote = Remote(
            rt.server,
            bot_id=self.bot_id,
            version=rt.version,
            auth_headers=self.remote_auth_headers,
            wait=self.wait,
        )
        # Set by the handshake: bots.cfg dimensions and the hooks script's name.
        self.server_dimensions: dims.Dimensions = {}
        self.bot_config_name: Optional[str] = None
        self.bot_config_rev: Optional[str] = None
        self.handshaken = False
        # Temporary reasons not to take work, by source (e.g. "update").
        self._quarantines: Dict[str, str] = {}
        self._throttle = backoff.ErrorThrottle()
        self._deferred_errors: List[str] = []
        self.dimensions: dims.Dimensions = {}
        self.state: Dict[str, Any] = {}

    def wait(self, seconds: float) -> bool:
        """Sleeps up to `seconds`; True if the bot was asked to quit meanwhile."""
        return self.quit.wait(max(0.0, seconds))

    def set_quarantine(self, source: str, message: str) -> None:
        """Refuses work for `source`'s reason until `clear_quarantine(source)`."""
        self._quarantines[source] = message

    def clear_quarantine(self, source: str) -> None:
        """Drops the quarantine reason set by `source`, if any."""
        self._quarantines.pop(source, None)

    def collect(self) -> Tuple[dims.Dimensions, Dict[str, Any]]:
        """Recomputes dimensions and state (hooks, server overlay, quarantine)."""
        problems: List[str] = []
        dimensions, error = self.hooks.dimensions(self.info, dims.default_dimensions(self.bot_id))
        if error:
            problems.append(error)
        dimensions.setdefault("id", [self.bot_id])
        if self.handshaken:
            dimensions = dims.merge_server_dimensions(
                dimensions, self.server_dimensions, self.bot_config_name or ""
            )
        self.info.dimensions = dimensions
        defaults = dims.default_state(self.rt.base_dir, self.started_ts, self.sleep_streak)
        state, error = self.hooks.state(self.info, defaults)
        if error:
            problems.append(error)
        if self.handshaken:
            state["bot_config"] = {"name": self.bot_config_name, "revision": self.bot_config_rev}
        if self.hooks.quarantine:
            problems.insert(0, self.hooks.quarantine)
        problems.extend(self._quarantines.values())
        if problems:
            existing = state.get("quarantined")
            if isinstance(existing, str) and existing:
                problems.insert(0, existing)
            state["quarantined"] = "; ".join(problems)
        self.info.state = state
        self.dimensions, self.state = dimensions, state
        for problem in problems:
            if problem.startswith(("get_dimensions", "get_state")):
                self.report_error(problem)
        return dimensions, state

    def post_event(self, event: str, message: str, budget: float = EVENT_BUDGET) -> bool:
        """Sends an event with the latest dimensions and state; False if it failed."""
        body = {
            "dimensions": self.dimensions,
            "event": event,
            "message": message,
            "session": self.remote.session,
            "state": self.state,
            "version": self.rt.version,
        }
        try:
            self.remote.post_json("event", body, budget=budget)
        except RemoteError as e:
            log.warning("could not send %s event: %s", event, e)
            return False
        return True

    def report_error(self, message: str, logged: bool = False) -> None:
        """Logs `message` and sends it as a bot_error, at most once per 10 min."""
        if not logged:
            log.error("%s", message)
        if self._throttle.should_report(message):
            self.post_event("bot_error", message)

    def report_exception(self, where: str, e: BaseException) -> None:
        """Reports an unexpected exception with the last frames of its traceback."""
        frames = traceback.format_exception(type(e), e, e.__traceback__)
        log.error("%s: %s", where, "".join(frames))
        # The message is also the throttle key: keep it stable across repeats.
        self.report_error(
            f"{type(e).__name__} in {where}: {e}\n{''.join(frames[-2:])}", logged=True
        )

    def remote_auth_headers(self) -> Dict[str, str]:
        """The hook's current credentials (none if the hook fails)."""
        try:
            return self.hooks.auth_headers(self.info)
        except Exception as e:
            # Reported later: sending the event now would ask for headers again.
            log.exception("get_authentication_headers failed")
            self._deferred_errors.append(f"get_authentication_headers failed: {e!r}")
            return {}

    def flush_errors(self) -> None:
        """Sends the errors that could not be reported where they happened."""
        errors, self._deferred_errors = self._deferred_errors, []
        for message in errors:
            self.report_error(message)

    def adopt_session(self, session: object) -> None:
        """Takes a session token handed back by the task runner (S1)."""
        if isinstance(session, str) and session:
            self.remote.session = session
