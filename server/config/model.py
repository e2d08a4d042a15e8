"""The validated, immutable config snapshot the rest of the server reads.

Handlers take one snapshot per request (`LiveConfig.current`), so a reload in
the middle of a request never mixes two revisions.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ipaddress
from typing import Protocol

from protos.config import bots_pb2, pools_pb2, settings_pb2
from server.model import BotDimensions

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Bot IDs whose group a snapshot remembers (ConfigSnapshot.group_for).
GROUP_CACHE_SIZE = 65_536


@dataclasses.dataclass(frozen=True)
class BotAuthRule:
    """One bots.cfg `auth` entry: every condition it sets must hold."""

    ip_allowlist: tuple[IPNetwork, ...] = ()
    bot_token_sha256: frozenset[str] = frozenset()
    log_if_failed: bool = False


@dataclasses.dataclass(frozen=True)
class BotGroup:
    """A bots.cfg bot group, resolved: forced dimensions parsed, hooks script loaded."""

    name: str
    bot_ids: frozenset[str]
    bot_id_prefixes: tuple[str, ...]
    auth: tuple[BotAuthRule, ...]
    dimensions: BotDimensions
    bot_config_script: str = ""
    bot_config_script_body: str = ""
    system_service_account: str = ""
    owners: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        """The default group lists neither bot IDs nor prefixes."""
        return not self.bot_ids and not self.bot_id_prefixes

    def handshake_config_hash(self) -> bytes:
        """The digest a session remembers; a change makes the next poll answer bot_restart.

        PROTOCOL.md 2.1 field 6: sorted lines for the hooks script and each
        forced dimension value. Every poll compares it: computed once per group.
        """
        return self._handshake_config_hash

    @functools.cached_property
    def _handshake_config_hash(self) -> bytes:
        script_sha = hashlib.sha256(self.bot_config_script_body.encode()).hexdigest()
        lines = [
            f"config_script_sha256:{script_sha}",
            f"config_script_name:{self.bot_config_script}",
        ]
        lines += [f"dimension:{k}:{v}" for k, vs in self.dimensions.items() for v in vs]
        return hashlib.sha256("\n".join(sorted(lines)).encode()).digest()


@dataclasses.dataclass(frozen=True)
class Settings:
    """settings.cfg with defaults applied: every field has its effective value."""

    reusable_task_age_secs: int = 7 * 24 * 3600
    bot_death_timeout_secs: int = 600
    force_bots_to_sleep_and_not_run_task: bool = False
    max_bot_sleep_time: int = 60
    long_poll_secs: int = 40
    reservation_timeout_secs: int = 300
    session_lifetime_secs: int = 3600
    bot_ping_tolerance_secs: int = 1200
    server_url: str = ""
    poll_replay_secs: int = 600
    stable_archive_file: str = ""
    canary_archive_file: str = ""
    canary_percent: int = 0
    # The role of client API callers without a token; "" for none.
    anonymous_role: str = ""


@dataclasses.dataclass(frozen=True)
class ConfigSnapshot:
    """One validated config set and its revision (a digest of the files)."""

    revision: str
    loaded_ts: float
    config_dir: str
    bots: bots_pb2.BotsCfg
    pools: pools_pb2.PoolsCfg
    settings_proto: settings_pb2.SettingsCfg
    settings: Settings
    groups: tuple[BotGroup, ...]
    # The base hooks script baked into the bot archive (configs/bot_config.py).
    base_hooks_script: str = ""
    # group_for's answers: every call of a bot asks it, once or twice.
    _groups_by_bot: dict[str, BotGroup | None] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def group_for(self, bot_id: str) -> BotGroup | None:
        """Finds the bot's group: exact ID (also the host part of a composite
        `<host>--<suffix>` ID), then longest prefix, then the default group.

        Answers are remembered for the snapshot's life, up to GROUP_CACHE_SIZE
        bot IDs (then forgotten at once: IDs come from callers, known or not).
        """
        if bot_id in self._groups_by_bot:
            return self._groups_by_bot[bot_id]
        if len(self._groups_by_bot) >= GROUP_CACHE_SIZE:
            self._groups_by_bot.clear()
        group = self._find_group(bot_id)
        self._groups_by_bot[bot_id] = group
        return group

    def _find_group(self, bot_id: str) -> BotGroup | None:
        host = bot_id.split("--", 1)[0]
        for group in self.groups:
            if bot_id in group.bot_ids or host in group.bot_ids:
                return group
        best: tuple[int, BotGroup] | None = None
        for group in self.groups:
            for prefix in group.bot_id_prefixes:
                if bot_id.startswith(prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), group)
        if best:
            return best[1]
        return next((g for g in self.groups if g.is_default), None)

    def pool(self, name: str) -> pools_pb2.Pool | None:
        """Returns the pools.cfg entry naming `name`, if any."""
        return next((p for p in self.pools.pool if name in p.name), None)


class ConfigSource(Protocol):
    """Anything holding the current config snapshot (LiveConfig in production)."""

    @property
    def current(self) -> ConfigSnapshot: ...
