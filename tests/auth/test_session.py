"""Bot session tokens and the keys that sign them (server/auth/session.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from protos.internal import session_pb2
from server.auth import botauth, session
from server.auth.session import BadKeysFile, BadSessionToken, SessionKey, SessionKeys
from server.clock import FakeClock
from server.config.model import BotAuthRule, BotGroup
from server.errors import Unauthenticated

LIFETIME = 3600


def make_group(pool: str = "lab", script_body: str = "") -> BotGroup:
    """A bot group admitting loopback, forcing one pool."""
    return BotGroup(
        name="lab",
        bot_ids=frozenset({"bot1"}),
        bot_id_prefixes=(),
        auth=(BotAuthRule(ip_allowlist=(ipaddress.ip_network("127.0.0.0/8"),)),),
        dimensions={"pool": [pool]},
        bot_config_script="hooks.py" if script_body else "",
        bot_config_script_body=script_body,
        system_service_account="bot@example.com",
    )


def make_session(clock: FakeClock, group: BotGroup | None = None) -> session_pb2.Session:
    """A session for bot1 created at the clock's time."""
    return session.new_session(
        "bot1",
        "0123456789abcdef0123456789abcdef/42",
        group or make_group(),
        now=clock.now(),
        lifetime_secs=LIFETIME,
        config_revision="rev1",
        server_version="drover-test",
    )


def fixed_keys(*names: str) -> SessionKeys:
    """Keys with predictable secrets, newest last."""
    return SessionKeys(SessionKey(n, hashlib.sha256(n.encode()).digest()) for n in names)


def retag(token: str, mutate: Callable[[session_pb2.SessionToken], None]) -> str:
    """Decodes a token, lets `mutate` edit the wrapper, and encodes it again."""
    wrapper = session_pb2.SessionToken.FromString(base64.b64decode(token))
    mutate(wrapper)
    return base64.b64encode(wrapper.SerializeToString()).decode()


def test_new_session_fills_every_field() -> None:
    """new_session records bot, session ID, expiry, group snapshot, config hash and revision."""
    clock = FakeClock(1000.5)
    group = make_group()
    sess = make_session(clock, group)
    assert sess.bot_id == "bot1"
    assert sess.session_id.endswith("/42")
    assert sess.expiry_us == 4_600_500_000
    assert sess.debug_info.created_us == 1_000_500_000
    assert sess.debug_info.server_version == "drover-test"
    assert sess.bot_config.group_name == "lab"
    assert sess.bot_config.system_service_account == "bot@example.com"
    assert botauth.rules_from_snapshot(sess.bot_config) == group.auth
    assert sess.handshake_config_hash == group.handshake_config_hash()
    assert sess.last_seen_config == "rev1"


def test_round_trip() -> None:
    """unmarshal(marshal(s)) gives back the same session."""
    keys = SessionKeys.generate()
    sess = make_session(FakeClock())
    token = session.marshal(sess, keys)
    assert session.unmarshal(token, keys) == sess


def test_token_is_padded_standard_base64_of_a_tagged_proto() -> None:
    """The token decodes strictly and holds the key ID and an HMAC over the prefixed session."""
    keys = fixed_keys("k1")
    sess = make_session(FakeClock())
    token = session.marshal(sess, keys)
    assert len(token) % 4 == 0
    wrapper = session_pb2.SessionToken.FromString(base64.b64decode(token, validate=True))
    tagged = wrapper.hmac_tagged
    assert tagged.key_id == "k1"
    secret = keys.secret("k1")
    assert secret is not None
    expected = hmac.new(secret, b"drover.Session" + tagged.session, "sha256").digest()
    assert tagged.hmac_sha256 == expected
    assert session_pb2.Session.FromString(tagged.session) == sess


def test_bad_session_token_is_unauthenticated() -> None:
    """BadSessionToken maps to 401 and its docstring leads the message."""
    error = BadSessionToken("no session")
    assert isinstance(error, Unauthenticated)
    assert error.status == 401
    assert str(error) == "Bad session token: no session"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "no session"),
        ("", "no session"),
        (12345, "is a int, not a string"),
        (["abc"], "is a list, not a string"),
        ("not base64!", "not base64"),
        ("QUJD", "does not parse"),  # Valid base64 of b"ABC", which is no proto.
        ("é" * 8, "not base64"),
        ("A" * 20_000, "longer than"),
    ],
)
def test_garbage_is_refused(token: object, message: str) -> None:
    """Missing, non-string, non-base64 and oversized tokens raise BadSessionToken."""
    with pytest.raises(BadSessionToken, match=message):
        session.unmarshal(token, SessionKeys.generate())


def test_valid_base64_of_an_empty_wrapper_is_refused() -> None:
    """A wrapper that parses but holds no hmac_tagged variant is refused."""
    # Field 2 (varint 1): unknown to SessionToken, so the oneof stays unset.
    token = base64.b64encode(b"\x10\x01").decode()
    with pytest.raises(BadSessionToken, match="not HMAC-tagged"):
        session.unmarshal(token, SessionKeys.generate())


def test_truncated_token_is_refused() -> None:
    """Cutting a token short (even at a base64 boundary) is refused."""
    keys = SessionKeys.generate()
    token = session.marshal(make_session(FakeClock()), keys)
    for cut in (4, len(token) // 2 // 4 * 4, len(token) - 4, len(token) - 1):
        with pytest.raises(BadSessionToken):
            session.unmarshal(token[:cut], keys)


def test_forged_mac_is_refused() -> None:
    """Flipping one bit of the tag is refused as a MAC mismatch."""
    keys = SessionKeys.generate()
    token = session.marshal(make_session(FakeClock()), keys)

    def flip(wrapper: session_pb2.SessionToken) -> None:
        tag = bytearray(wrapper.hmac_tagged.hmac_sha256)
        tag[0] ^= 1
        wrapper.hmac_tagged.hmac_sha256 = bytes(tag)

    with pytest.raises(BadSessionToken, match="MAC does not match"):
        session.unmarshal(retag(token, flip), keys)


def test_edited_session_is_refused() -> None:
    """Changing the signed session (another bot ID) without re-signing is refused."""
    keys = SessionKeys.generate()
    token = session.marshal(make_session(FakeClock()), keys)

    def steal(wrapper: session_pb2.SessionToken) -> None:
        sess = session_pb2.Session.FromString(wrapper.hmac_tagged.session)
        sess.bot_id = "bot2"
        wrapper.hmac_tagged.session = sess.SerializeToString()

    with pytest.raises(BadSessionToken, match="MAC does not match"):
        session.unmarshal(retag(token, steal), keys)


def test_unknown_key_id_is_refused() -> None:
    """A token naming a key this server does not have is refused."""
    keys = fixed_keys("k1")
    token = session.marshal(make_session(FakeClock()), keys)

    def rename(wrapper: session_pb2.SessionToken) -> None:
        wrapper.hmac_tagged.key_id = "k9"

    with pytest.raises(BadSessionToken, match="unknown key 'k9'"):
        session.unmarshal(retag(token, rename), keys)


def test_other_servers_key_is_refused() -> None:
    """A token signed by another server with the same key ID but its own secret is refused."""
    ours = SessionKeys([SessionKey("k1", b"a" * 32)])
    theirs = SessionKeys([SessionKey("k1", b"b" * 32)])
    token = session.marshal(make_session(FakeClock()), theirs)
    with pytest.raises(BadSessionToken, match="MAC does not match"):
        session.unmarshal(token, ours)


@pytest.mark.parametrize("field", ["bot_id", "session_id", "expiry_us", "bot_config"])
def test_signed_session_missing_a_field_is_refused(field: str) -> None:
    """A correctly signed session without a required field is still refused."""
    keys = SessionKeys.generate()
    sess = make_session(FakeClock())
    sess.ClearField(field)  # type: ignore[arg-type]  # the parameter is one of the literals
    with pytest.raises(BadSessionToken, match=f"lacks {field}"):
        session.unmarshal(session.marshal(sess, keys), keys)


def test_signed_garbage_payload_is_refused() -> None:
    """A correctly tagged payload that is not a Session proto is refused."""
    keys = fixed_keys("k1")
    payload = b"\xff\xff\xff"
    secret = keys.secret("k1")
    assert secret is not None
    tag = hmac.new(secret, b"drover.Session" + payload, "sha256").digest()
    wrapper = session_pb2.SessionToken(
        hmac_tagged=session_pb2.HmacTagged(session=payload, hmac_sha256=tag, key_id="k1")
    )
    token = base64.b64encode(wrapper.SerializeToString()).decode()
    with pytest.raises(BadSessionToken, match="signed session does not parse"):
        session.unmarshal(token, keys)


def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() -> None:
    """After rotate, old tokens still verify and new tokens name the new key."""
    keys = SessionKeys.generate()
    old_id = keys.signing.key_id
    sess = make_session(FakeClock())
    old_token = session.marshal(sess, keys)
    new_key = keys.rotate()
    assert keys.signing == new_key
    assert keys.key_ids == (old_id, new_key.key_id)
    assert session.unmarshal(old_token, keys) == sess
    new_token = session.marshal(sess, keys)
    wrapper = session_pb2.SessionToken.FromString(base64.b64decode(new_token))
    assert wrapper.hmac_tagged.key_id == new_key.key_id
    assert session.unmarshal(new_token, keys) == sess
    # A server that only knows the old key cannot verify the new token.
    old_only = SessionKeys([SessionKey(old_id, keys.secret(old_id) or b"")])
    with pytest.raises(BadSessionToken, match="unknown key"):
        session.unmarshal(new_token, old_only)


def test_keys_are_validated() -> None:
    """Empty lists, duplicate IDs, empty IDs and short secrets are refused."""
    with pytest.raises(ValueError, match="at least one"):
        SessionKeys([])
    with pytest.raises(ValueError, match="duplicate"):
        SessionKeys([SessionKey("a", b"x" * 32), SessionKey("a", b"y" * 32)])
    with pytest.raises(ValueError, match="non-empty ID"):
        SessionKeys([SessionKey("", b"x" * 32)])
    with pytest.raises(ValueError, match="at least 32"):
        SessionKeys([SessionKey("a", b"x" * 31)])


def test_secret_is_not_in_repr() -> None:
    """Printing a key (e.g. in a log) does not reveal its secret."""
    key = SessionKey("k1", b"\x01" * 32)
    assert repr(b"\x01" * 32) not in repr(key)
    assert "k1" in repr(key)


def write_keys_file(state_dir: Path, keys: SessionKeys, mode: int = 0o600) -> Path:
    """Writes the keys file an older server kept in its state directory."""
    doc = {
        "keys": [
            {"id": k.key_id, "secret": base64.b64encode(k.secret).decode("ascii")}
            for k in keys.keys
        ]
    }
    path = state_dir / session.KEYS_FILE
    path.write_text(json.dumps(doc))
    path.chmod(mode)
    return path


def test_keys_file_of_an_older_server_is_read(tmp_path: Path) -> None:
    """read_file returns the keys an older server saved, in order, the newest signing."""
    write_keys_file(tmp_path, fixed_keys("old", "new"))
    loaded = SessionKeys.read_file(tmp_path)
    assert loaded is not None
    assert loaded.keys == fixed_keys("old", "new").keys
    assert loaded.signing.key_id == "new"


def test_missing_keys_file_reads_as_none(tmp_path: Path) -> None:
    """Without a keys file there is nothing to read, and nothing is created."""
    assert SessionKeys.read_file(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_keys_file_readable_by_others_is_flagged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A keys file other users can read is still used, with a warning naming it."""
    path = write_keys_file(tmp_path, fixed_keys("k1"), mode=0o644)
    assert SessionKeys.read_file(tmp_path) is not None
    assert f"{path} is readable by other users" in caplog.text


def test_corrupt_keys_file_is_refused(tmp_path: Path) -> None:
    """An unusable keys file raises BadKeysFile naming it, rather than logging out every bot."""
    path = tmp_path / session.KEYS_FILE
    for content in ("not json", json.dumps({"keys": []}), json.dumps({"keys": [{"id": "a"}]})):
        path.write_text(content)
        with pytest.raises(BadKeysFile, match=str(path)):
            SessionKeys.read_file(tmp_path)
    assert path.read_text() == json.dumps({"keys": [{"id": "a"}]})


def test_adopt_replaces_the_keys_in_place() -> None:
    """adopt makes the same object verify and sign with another set, and says if it changed."""
    keys = fixed_keys("a")
    token = session.marshal(make_session(FakeClock()), fixed_keys("a", "b"))
    with pytest.raises(BadSessionToken, match="unknown key"):
        session.unmarshal(token, keys)
    assert keys.adopt(fixed_keys("a", "b"))
    assert session.unmarshal(token, keys).bot_id == "bot1"
    assert keys.signing.key_id == "b"
    assert not keys.adopt(fixed_keys("a", "b"))


def test_expiry_boundaries() -> None:
    """A session is valid up to and including its expiry, expired a microsecond later."""
    clock = FakeClock(1_700_000_000.0)
    sess = make_session(clock)
    assert not session.is_expired(sess, clock.now())
    clock.advance(LIFETIME - 1)
    assert not session.is_expired(sess, clock.now())
    clock.advance(1)
    assert not session.is_expired(sess, clock.now())
    clock.advance(0.000001)
    assert session.is_expired(sess, clock.now())


def test_unmarshal_does_not_check_expiry() -> None:
    """An expired session still unmarshals; the caller decides what expiry means."""
    keys = SessionKeys.generate()
    clock = FakeClock()
    sess = make_session(clock)
    clock.advance(10 * LIFETIME)
    restored = session.unmarshal(session.marshal(sess, keys), keys)
    assert session.is_expired(restored, clock.now())


def test_refresh_extends_a_copy() -> None:
    """refresh returns a copy with a new expiry and leaves the original untouched."""
    clock = FakeClock()
    sess = make_session(clock)
    clock.advance(LIFETIME + 5)
    fresh = session.refresh(sess, now=clock.now(), lifetime_secs=LIFETIME)
    assert session.is_expired(sess, clock.now())
    assert not session.is_expired(fresh, clock.now())
    assert fresh.expiry_us == round((clock.now() + LIFETIME) * 1e6)
    assert fresh.bot_config == sess.bot_config
    assert fresh.handshake_config_hash == sess.handshake_config_hash
    assert fresh.last_seen_config == "rev1"
    assert sess.expiry_us != fresh.expiry_us


def test_refresh_with_a_group_takes_its_config() -> None:
    """refresh with a group and revision stores the group's new snapshot and hash."""
    clock = FakeClock()
    sess = make_session(clock)
    changed = make_group(pool="other", script_body="def get_state(bot): return {}\n")
    fresh = session.refresh(
        sess, now=clock.now(), lifetime_secs=LIFETIME, group=changed, config_revision="rev2"
    )
    assert fresh.handshake_config_hash == changed.handshake_config_hash()
    assert fresh.handshake_config_hash != sess.handshake_config_hash
    assert fresh.last_seen_config == "rev2"
    assert sess.last_seen_config == "rev1"


def test_a_fleet_of_tokens_is_remembered_once_verified() -> None:
    """Each of 10,000 bots' tokens, verified once, is then known without verifying again."""
    keys = fixed_keys("k1")
    clock = FakeClock(1_800_000_000.0)
    tokens = []
    for n in range(10_000):
        sess = make_session(clock)
        sess.bot_id = f"bot{n}"
        tokens.append(session.marshal(sess, keys))
    assert all(keys.verified(token) is not None for token in tokens)
