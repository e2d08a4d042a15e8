"""What the bot API services share: dependencies, and the checks every call makes.

Authentication order follows PROTOCOL.md 1.5: credentials against bots.cfg
first (a refusal stores nothing), then the session.
"""

from __future__ import annotations

import dataclasses
import logging

from protos.internal import session_pb2
from server.auth import botauth, session
from server.auth.session import BadSessionToken, SessionKeys
from server.botapi.messages import BotCredentials
from server.botcode import BotCode
from server.clock import Clock
from server.config.model import BotGroup, ConfigSnapshot, ConfigSource
from server.errors import PermissionDenied
from server.scheduler.queues import QueueIndex
from server.scheduler.waiters import Notifier, PollWaiters
from server.store.base import Store

log = logging.getLogger("drover.botapi")


class UnknownBot(PermissionDenied):
    """The bot is not in bots.cfg"""


@dataclasses.dataclass
class BotApiContext:
    """The dependencies of the bot API services."""

    store: Store
    config: ConfigSource
    clock: Clock
    keys: SessionKeys
    botcode: BotCode
    queues: QueueIndex
    notifier: Notifier
    server_version: str
    server_url: str
    # Followers of task output, woken by every task_update of their task.
    output_waiters: PollWaiters = dataclasses.field(default_factory=PollWaiters)

    def admit(self, bot_id: str, creds: BotCredentials) -> tuple[ConfigSnapshot, BotGroup, str]:
        """Finds the bot's group and checks its credentials against it.

        Returns (config snapshot, group, authenticated identity). Raises
        UnknownBot or botauth.BotAuthError; nothing is stored for a refused bot.
        """
        snapshot = self.config.current
        group = snapshot.group_for(bot_id)
        if group is None:
            raise UnknownBot(f"no bot group in bots.cfg admits {bot_id!r}")
        identity = botauth.authenticate(
            group.auth, bot_id=bot_id, remote_ip=creds.remote_ip, headers=creds.headers
        )
        return snapshot, group, identity

    def system_account(self, bot_id: str) -> str:
        """The bots.cfg `system_service_account` of the bot's group, or "none"."""
        group = self.config.current.group_for(bot_id)
        return (group.system_service_account if group else "") or "none"

    def open_session(self, token: str | None, bot_id: str) -> session_pb2.Session:
        """Verifies a session token for `bot_id` (ignoring expiry). Raises BadSessionToken."""
        if token is None:
            raise BadSessionToken("no session")
        sess = session.unmarshal(token, self.keys)
        if sess.bot_id != bot_id:
            raise BadSessionToken(f"the session belongs to bot {sess.bot_id!r}")
        return sess

    def recheck_credentials(self, sess: session_pb2.Session, creds: BotCredentials) -> None:
        """Re-checks the caller against the bot group stored in its session.

        So a bot removed from bots.cfg mid-task can still finish it, but a
        stolen token is useless from elsewhere (PROTOCOL.md 2.1).
        """
        rules = botauth.rules_from_snapshot(sess.bot_config)
        botauth.authenticate(
            rules, bot_id=sess.bot_id, remote_ip=creds.remote_ip, headers=creds.headers
        )

    def refreshed_token(self, sess: session_pb2.Session, now: float) -> str | None:
        """A fresh token once the session is past half its life, else None."""
        lifetime = self.config.current.settings.session_lifetime_secs
        if sess.expiry_us / 1e6 - now > lifetime / 2:
            return None
        return session.marshal(session.refresh(sess, now=now, lifetime_secs=lifetime), self.keys)
