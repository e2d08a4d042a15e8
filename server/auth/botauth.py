"""Bot authentication against a bots.cfg group's `auth` entries (PROTOCOL.md 2.2).

A bot group lists rules and the first rule that passes wins. A rule sets an IP
allowlist, accepted bot token digests, or both, and every condition it sets
must hold (DESIGN.md 4.3). Handshake and poll check the caller against its
group in the current config. Later calls (event, task_update, task_error)
check it against the rules stored in the session (`snapshot_of_group` /
`rules_from_snapshot`). So a bot that was removed from bots.cfg in the middle
of a task can still finish it, but a stolen session token is useless without
the bot's credentials.

Refusals never echo the token. They say which condition failed, so an
operator can fix the bot or bots.cfg from the message alone.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Mapping, Sequence

from multidict import CIMultiDict, CIMultiDictProxy

from protos.internal import session_pb2
from server.config.model import BotAuthRule, BotGroup, IPNetwork
from server.errors import PermissionDenied, Unauthenticated

log = logging.getLogger("drover.auth")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Snapshot entries are "<rule index>|<value>". The proto keeps flat lists, and
# without the index a group with an IP-only rule and a token-only rule could
# not be told apart from one rule that requires both. "|" never occurs in a
# CIDR or a hex digest.
# How much of a token digest names the identity: enough to tell a fleet's
# tokens apart in logs, far too little to help guess the token.
_IDENTITY_DIGEST_CHARS = 8


class BotAuthError(PermissionDenied):
    """The bot's credentials are not accepted."""


class BotTokenMissing(BotAuthError, Unauthenticated):
    """The bot sent no bearer token and no rule of its bot group admits it without one."""

    # Both bases define a status; the more precise one wins here.
    status = 401
    grpc_code = "UNAUTHENTICATED"


def hash_token(token: str) -> str:
    """The lowercase hex SHA-256 of a bot token, as bots.cfg `bot_token_sha256` lists it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None.

    Header names are matched case-insensitively even when `headers` is a plain
    dict, and so is the scheme (RFC 7235).
    """
    value = headers.get("Authorization")
    if value is None and not isinstance(headers, CIMultiDictProxy | CIMultiDict):
        # aiohttp's headers already match names case-insensitively: only a
        # plain mapping needs the scan.
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def authenticate(
    rules: Sequence[BotAuthRule], *, bot_id: str, remote_ip: str, headers: Mapping[str, str]
) -> str:
    """Returns the identity the first passing rule proves, or raises BotAuthError.

    The identity is `bot-token:<first 8 hex of the token digest>` for a rule
    that checks a token, else `bot-ip:<address>`. BotTokenMissing (401) is
    raised when no bearer token was sent and some rule accepts tokens (sending
    one could help). Any other refusal is a plain BotAuthError (403).
    """
    address = parse_ip(remote_ip)
    token = bearer_token(headers)
    digest = hash_token(token) if token is not None else None
    problems: list[str] = []
    for index, rule in enumerate(rules):
        problem = _rule_problem(rule, address, digest)
        if not problem:
            return _identity(rule, address, digest)
        problems.append(f"auth[{index}]: {problem}")
    where = f"bot {bot_id!r} from {remote_ip or 'an unknown address'}"
    detail = f"{where}: " + ("; ".join(problems) or "its bot group has no auth entries")
    if any(rule.log_if_failed for rule in rules):
        log.warning("bot authentication failed: %s", detail)
    if digest is None and any(rule.bot_token_sha256 for rule in rules):
        raise BotTokenMissing(detail)
    raise BotAuthError(detail)


@functools.lru_cache(maxsize=16384)
def parse_ip(remote_ip: str) -> IPAddress | None:
    """The caller's address, or None when it is not an IP (e.g. a Unix socket peer).

    Remembered for a fleet's worth of addresses: every bot call parses its
    caller's, and addresses are immutable values.
    """
    try:
        return ipaddress.ip_address(remote_ip.strip())
    except ValueError:
        return None


def is_ip_allowed(address: IPAddress | None, networks: Sequence[IPNetwork]) -> bool:
    """True when `address` is in one of `networks`.

    A dual-stack socket reports IPv4 peers as `::ffff:a.b.c.d`, so such an
    address also matches the IPv4 networks its embedded address is in.
    """
    if address is None:
        return False
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    # `in` is simply False across IP versions, so no version check is needed.
    return any(candidate in network for candidate in candidates for network in networks)


def _is_token_accepted(digest: str, accepted: frozenset[str]) -> bool:
    # Every entry is compared, and in constant time, so the timing tells
    # nothing about how close a guess came or which entry matched.
    found = False
    for candidate in accepted:
        found |= hmac.compare_digest(digest, candidate)
    return found


def _rule_problem(rule: BotAuthRule, address: IPAddress | None, digest: str | None) -> str:
    """Why `rule` refuses the caller, or "" when it passes."""
    if not rule.ip_allowlist and not rule.bot_token_sha256:
        # Config validation forbids this; fail closed rather than admit everyone.
        return "the entry sets no condition"
    problems: list[str] = []
    if rule.ip_allowlist and not is_ip_allowed(address, rule.ip_allowlist):
        problems.append("the address is not in the entry's IP allowlist")
    if rule.bot_token_sha256:
        if digest is None:
            problems.append("no 'Authorization: Bearer' token was sent")
        elif not _is_token_accepted(digest, rule.bot_token_sha256):
            problems.append("the bearer token is not one the entry accepts")
    return " and ".join(problems)


def _identity(rule: BotAuthRule, address: IPAddress | None, digest: str | None) -> str:
    if rule.bot_token_sha256 and digest is not None:
        return f"bot-token:{digest[:_IDENTITY_DIGEST_CHARS]}"
    return _ip_identity(address)


@functools.lru_cache(maxsize=16384)
def _ip_identity(address: IPAddress | None) -> str:
    """`bot-ip:<address>`, remembered as parse_ip's addresses are: formatting one is not free."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return f"bot-ip:{address}"


def snapshot_of_group(group: BotGroup) -> session_pb2.BotConfigSnapshot:
    """What a session stores about its bot group to authenticate later calls."""
    return session_pb2.BotConfigSnapshot(
        group_name=group.name,
        system_service_account=group.system_service_account,
        auth=[
            session_pb2.AuthRule(
                ip_allowlist=[str(n) for n in rule.ip_allowlist],
                bot_token_sha256=sorted(rule.bot_token_sha256),
            )
            for rule in group.auth
        ],
    )


def rules_from_snapshot(snapshot: session_pb2.BotConfigSnapshot) -> tuple[BotAuthRule, ...]:
    """The auth rules a session stored, in their bots.cfg order.

    Raises ValueError for an entry that is not a CIDR, which only a bug can
    produce since the snapshot comes from a validated config inside a
    MAC-checked token. Every run call of a bot re-checks its caller against
    these, and parsing the networks cost more than the check: the rules of
    a snapshot are kept (a fleet has a handful of distinct snapshots).
    """
    return _rules_of(snapshot.SerializeToString(deterministic=True))


@functools.lru_cache(maxsize=256)
def _rules_of(serialized: bytes) -> tuple[BotAuthRule, ...]:
    snapshot = session_pb2.BotConfigSnapshot.FromString(serialized)
    return tuple(
        BotAuthRule(
            ip_allowlist=tuple(ipaddress.ip_network(n, strict=False) for n in rule.ip_allowlist),
            bot_token_sha256=frozenset(rule.bot_token_sha256),
        )
        for rule in snapshot.auth
    )
