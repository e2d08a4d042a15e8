"""Bot authentication against bots.cfg auth rules (server/auth/botauth.py)."""

from __future__ import annotations

import hashlib
import ipaddress
import logging

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from protos.internal import session_pb2
from server.auth import botauth
from server.auth.botauth import BotAuthError, BotTokenMissing
from server.config.model import BotAuthRule, BotGroup
from server.errors import PermissionDenied, Unauthenticated

TOKEN = "s3cret-bot-token"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
OTHER_DIGEST = hashlib.sha256(b"another-token").hexdigest()


def ip_rule(*cidrs: str, tokens: frozenset[str] = frozenset()) -> BotAuthRule:
    """An auth rule with these CIDRs (and optionally token digests)."""
    return BotAuthRule(
        ip_allowlist=tuple(ipaddress.ip_network(c) for c in cidrs), bot_token_sha256=tokens
    )


def token_rule(*digests: str) -> BotAuthRule:
    """An auth rule accepting these token digests from anywhere."""
    return BotAuthRule(bot_token_sha256=frozenset(digests))


def bearer(token: str = TOKEN) -> dict[str, str]:
    """Headers carrying a bearer token."""
    return {"Authorization": f"Bearer {token}"}


def auth(
    rules: list[BotAuthRule], remote_ip: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> str:
    """Runs authenticate for bot "bot1"."""
    return botauth.authenticate(rules, bot_id="bot1", remote_ip=remote_ip, headers=headers or {})


def test_hash_token_is_lowercase_sha256_hex() -> None:
    """hash_token is the hex SHA-256 that bots.cfg lists."""
    assert botauth.hash_token(TOKEN) == DIGEST
    assert botauth.hash_token(TOKEN) == botauth.hash_token(TOKEN).lower()


def test_ip_rule_admits_an_address_in_the_allowlist() -> None:
    """An IP-only rule admits an address inside one of its CIDRs, named by address."""
    assert auth([ip_rule("10.0.0.0/8", "127.0.0.0/8")]) == "bot-ip:127.0.0.1"


def test_ip_rule_refuses_an_address_outside_with_403() -> None:
    """An address outside every CIDR is refused with 403 and a message naming the address."""
    with pytest.raises(BotAuthError) as info:
        auth([ip_rule("10.0.0.0/8")], remote_ip="192.168.1.5")
    assert info.value.status == 403
    assert "192.168.1.5" in str(info.value)
    assert "IP allowlist" in str(info.value)
    assert not isinstance(info.value, BotTokenMissing)


def test_ipv6_address_matches_ipv6_network() -> None:
    """An IPv6 peer matches an IPv6 CIDR."""
    assert auth([ip_rule("::1/128")], remote_ip="::1") == "bot-ip:::1"
    with pytest.raises(BotAuthError):
        auth([ip_rule("::1/128")], remote_ip="::2")


def test_ipv4_mapped_address_matches_ipv4_network() -> None:
    """A dual-stack socket's ::ffff:127.0.0.1 matches 127.0.0.0/8 and is named as IPv4."""
    assert auth([ip_rule("127.0.0.0/8")], remote_ip="::ffff:127.0.0.1") == "bot-ip:127.0.0.1"
    with pytest.raises(BotAuthError):
        auth([ip_rule("127.0.0.0/8")], remote_ip="::ffff:10.0.0.1")


def test_ipv4_mapped_address_still_matches_mapped_ipv6_network() -> None:
    """A mapped address also matches an IPv6 CIDR written in mapped form."""
    assert auth([ip_rule("::ffff:0:0/96")], remote_ip="::ffff:10.1.2.3") == "bot-ip:10.1.2.3"


def test_unparseable_remote_address_is_refused() -> None:
    """A peer that is not an IP (a Unix socket) never passes an IP rule."""
    with pytest.raises(BotAuthError, match="an unknown address"):
        auth([ip_rule("0.0.0.0/0")], remote_ip="")


def test_token_rule_admits_a_listed_token_from_anywhere() -> None:
    """A token-only rule admits the right bearer token from any address."""
    identity = auth([token_rule(OTHER_DIGEST, DIGEST)], "203.0.113.9", bearer())
    assert identity == f"bot-token:{DIGEST[:8]}"


def test_header_name_and_scheme_are_case_insensitive() -> None:
    """`authorization: bearer <t>` in a plain dict works like the canonical spelling."""
    assert auth([token_rule(DIGEST)], headers={"authorization": f"bearer  {TOKEN} "}).startswith(
        "bot-token:"
    )


def test_aiohttp_headers_find_the_token_whatever_its_spelling() -> None:
    """aiohttp's case-insensitive headers give the token, or its absence, without a scan."""
    sent = CIMultiDictProxy(CIMultiDict({"AUTHORIZATION": f"Bearer {TOKEN}"}))
    assert botauth.bearer_token(sent) == TOKEN
    assert botauth.bearer_token(CIMultiDictProxy(CIMultiDict({"Host": "x"}))) is None
    with pytest.raises(BotTokenMissing):
        botauth.authenticate(
            [token_rule(DIGEST)], bot_id="bot1", remote_ip="127.0.0.1", headers=CIMultiDict()
        )


def test_wrong_token_is_refused_with_403_without_leaking_it() -> None:
    """A wrong token gets 403 and a message that neither echoes it nor its digest."""
    with pytest.raises(BotAuthError) as info:
        auth([token_rule(DIGEST)], headers=bearer("wrong-token"))
    message = str(info.value)
    assert info.value.status == 403
    assert "not one the entry accepts" in message
    assert "wrong-token" not in message
    assert botauth.hash_token("wrong-token")[:8] not in message


def test_missing_token_is_401() -> None:
    """No Authorization header for a token rule is a 401 that says what is missing."""
    with pytest.raises(BotTokenMissing) as info:
        auth([token_rule(DIGEST)])
    assert info.value.status == 401
    assert isinstance(info.value, Unauthenticated)
    assert isinstance(info.value, PermissionDenied)
    assert "no 'Authorization: Bearer' token" in str(info.value)


def test_non_bearer_authorization_counts_as_no_token() -> None:
    """A Basic Authorization header is not a bot token: 401, as if none was sent."""
    with pytest.raises(BotTokenMissing):
        auth([token_rule(DIGEST)], headers={"Authorization": "Basic dXNlcjpwYXNz"})


def test_rule_with_both_conditions_needs_both() -> None:
    """A rule with CIDRs and digests admits only the right token from the right address."""
    rule = ip_rule("10.0.0.0/8", tokens=frozenset({DIGEST}))
    assert auth([rule], "10.1.1.1", bearer()) == f"bot-token:{DIGEST[:8]}"
    with pytest.raises(BotAuthError, match="IP allowlist"):
        auth([rule], "192.0.2.1", bearer())
    with pytest.raises(BotTokenMissing):
        auth([rule], "10.1.1.1")
    with pytest.raises(BotAuthError, match="not one the entry accepts"):
        auth([rule], "10.1.1.1", bearer("nope"))


def test_first_passing_rule_wins() -> None:
    """With several rules, the first one that passes names the identity."""
    rules = [token_rule(DIGEST), ip_rule("127.0.0.0/8")]
    assert auth(rules, "127.0.0.1", bearer()).startswith("bot-token:")
    assert auth(rules, "127.0.0.1") == "bot-ip:127.0.0.1"
    assert auth(list(reversed(rules)), "127.0.0.1", bearer()) == "bot-ip:127.0.0.1"


def test_refusal_lists_every_rule() -> None:
    """When no rule passes, the message explains each one by its index."""
    with pytest.raises(BotAuthError) as info:
        auth([ip_rule("10.0.0.0/8"), token_rule(DIGEST)], "192.0.2.1", bearer("x"))
    assert "auth[0]: the address is not in" in str(info.value)
    assert "auth[1]: the bearer token is not one" in str(info.value)


def test_missing_token_with_an_ip_rule_that_fails_is_401() -> None:
    """When sending a token could have helped, the refusal is 401."""
    with pytest.raises(BotTokenMissing):
        auth([ip_rule("10.0.0.0/8"), token_rule(DIGEST)], "192.0.2.1")


def test_no_rules_refuses() -> None:
    """A group without auth entries admits nobody."""
    with pytest.raises(BotAuthError, match="no auth entries"):
        auth([])


def test_rule_without_conditions_fails_closed() -> None:
    """An entry that sets nothing (forbidden by validation) admits nobody."""
    with pytest.raises(BotAuthError, match="sets no condition"):
        auth([BotAuthRule()])


def test_log_if_failed_logs_the_refusal(caplog: pytest.LogCaptureFixture) -> None:
    """A rule with log_if_failed makes a refusal show up in the logs."""
    rule = BotAuthRule(ip_allowlist=(ipaddress.ip_network("10.0.0.0/8"),), log_if_failed=True)
    with caplog.at_level(logging.WARNING, logger="drover.auth"), pytest.raises(BotAuthError):
        auth([rule], "192.0.2.1")
    assert "192.0.2.1" in caplog.text


def group_with(*rules: BotAuthRule) -> BotGroup:
    """A bot group with these auth rules."""
    return BotGroup(
        name="lab",
        bot_ids=frozenset(),
        bot_id_prefixes=(),
        auth=rules,
        dimensions={"pool": ["lab"]},
        system_service_account="bot@example.com",
    )


def test_snapshot_round_trips_the_rules() -> None:
    """rules_from_snapshot gives back the group's rules, in order, conditions intact."""
    rules = (ip_rule("127.0.0.0/8", "::1/128"), token_rule(DIGEST, OTHER_DIGEST))
    snapshot = botauth.snapshot_of_group(group_with(*rules))
    assert snapshot.group_name == "lab"
    assert snapshot.system_service_account == "bot@example.com"
    assert botauth.rules_from_snapshot(snapshot) == rules


def test_snapshot_keeps_alternative_rules_apart() -> None:
    """An IP rule and a token rule stay alternatives after the round trip, not one joint rule."""
    snapshot = botauth.snapshot_of_group(group_with(ip_rule("10.0.0.0/8"), token_rule(DIGEST)))
    rules = botauth.rules_from_snapshot(snapshot)
    assert auth(list(rules), "10.0.0.1") == "bot-ip:10.0.0.1"
    assert auth(list(rules), "192.0.2.1", bearer()).startswith("bot-token:")


def test_snapshot_keeps_a_joint_rule_joint() -> None:
    """A rule that needs IP and token still needs both after the round trip."""
    rule = ip_rule("10.0.0.0/8", tokens=frozenset({DIGEST}))
    rules = botauth.rules_from_snapshot(botauth.snapshot_of_group(group_with(rule)))
    assert rules == (rule,)
    with pytest.raises(BotAuthError):
        auth(list(rules), "192.0.2.1", bearer())


def test_snapshot_keeps_conditions_of_one_rule_together() -> None:
    """A rule requiring both an IP and a token stays one rule in the snapshot."""
    snapshot = session_pb2.BotConfigSnapshot(
        auth=[session_pb2.AuthRule(ip_allowlist=["127.0.0.1/32", "::1"], bot_token_sha256=[DIGEST])]
    )
    assert botauth.rules_from_snapshot(snapshot) == (
        ip_rule("127.0.0.1/32", "::1/128", tokens=frozenset({DIGEST})),
    )
