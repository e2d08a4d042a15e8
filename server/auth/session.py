"""Bot session tokens: what the server hands a bot at handshake (PROTOCOL.md 2.1).

A session records the bot ID, the bot's session ID, an expiry, the bot group's
auth rules and the handshake config hash. It is serialized as a protobuf and
tagged with HMAC-SHA256 under a server secret (DESIGN.md 8). The bot treats
the token as opaque and echoes the latest one it received (PROTOCOL.md 0.2.4).

Like Swarming's `bot_session`, the operations are small pure functions:
`new_session`, `marshal`, `unmarshal`, `is_expired`, `refresh`. The bot API
services decide what a bad or expired session means for each call (S2, S3).
`SessionKeys` holds the secrets: several verify and the newest signs, so the
secret can rotate without stranding bots. A token signed with a key the
server no longer has gets `bot_restart` on poll, which is how bots recover.
The keys live in the Store, shared by every replica (server/auth/session_keystore.py).
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterable
from pathlib import Path

from google.protobuf.message import DecodeError

from protos.internal import session_pb2
from server.auth.botauth import snapshot_of_group
from server.config.model import BotGroup
from server.errors import Unauthenticated

log = logging.getLogger("drover.auth")

# Where servers before the shared keys kept them, in the state directory.
KEYS_FILE = "session_keys.json"
# HMAC-SHA256 keys shorter than the hash output weaken the tag.
MIN_SECRET_BYTES = 32
# Binds the tag to this use of the key: the same secret could never validate
# a different kind of message.
_MAC_CONTEXT = b"drover.Session"
# Far above a real token (a few hundred characters); anything longer is
# refused before it is decoded.
_MAX_TOKEN_CHARS = 16 * 1024
# Tokens remembered as verified (see SessionKeys.verified). A bot keeps its
# token for half the session's life (a poll refreshes it only then), so one
# entry per bot: a fleet of this size verifies each token once. With fewer
# entries than bots, an idle fleet's polls (each bot's once per hold) all
# missed and were verified anew, a tenth of an idle poll's cost at 10,000
# bots. An entry is the token and its decoded session, about 1 KB.
VERIFIED_TOKENS = 16384


class BadSessionToken(Unauthenticated):
    """Bad session token."""


class BadKeysFile(ValueError):
    """The session keys file cannot be used; the server must not start with it."""


@dataclasses.dataclass(frozen=True)
class SessionKey:
    """One HMAC secret and the ID that tokens carry to name it."""

    key_id: str
    secret: bytes = dataclasses.field(repr=False)

    @classmethod
    def generate(cls, taken: Iterable[str] = ()) -> SessionKey:
        """A fresh random key whose ID is not in `taken`."""
        taken = set(taken)
        key_id = secrets.token_hex(4)
        while key_id in taken:
            key_id = secrets.token_hex(4)
        return cls(key_id, secrets.token_bytes(MIN_SECRET_BYTES))


class SessionKeys:
    """The keys that verify session tokens; the newest (last) one signs.

    Build one from a list; server/auth/session_keystore.py keeps them in the
    Store. `rotate` adds a key and keeps the old ones, so tokens already
    handed out stay valid until they expire.
    """

    def __init__(self, keys: Iterable[SessionKey]) -> None:
        self._keys = list(keys)
        # Tokens this set of keys signed or verified, with their sessions: every
        # bot call carries one, and checking it again (base64, two protobuf
        # parses, an HMAC) cost more than the rest of a task_update's checks.
        # Emptied whenever the keys change.
        self._verified: collections.OrderedDict[str, session_pb2.Session] = (
            collections.OrderedDict()
        )
        if not self._keys:
            raise ValueError("at least one session key is needed")
        ids = [key.key_id for key in self._keys]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate session key IDs in {ids}")
        for key in self._keys:
            if not key.key_id:
                raise ValueError("a session key needs a non-empty ID")
            if len(key.secret) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"session key {key.key_id!r} has {len(key.secret)} bytes;"
                    f" at least {MIN_SECRET_BYTES} are needed"
                )

    @classmethod
    def generate(cls) -> SessionKeys:
        """One fresh random key."""
        return cls([SessionKey.generate()])

    @property
    def signing(self) -> SessionKey:
        """The key new tokens are signed with."""
        return self._keys[-1]

    @property
    def keys(self) -> tuple[SessionKey, ...]:
        """Every key, oldest first."""
        return tuple(self._keys)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key ID, oldest first."""
        return tuple(key.key_id for key in self._keys)

    def secret(self, key_id: str) -> bytes | None:
        """The secret of key `key_id`, or None if the key is unknown."""
        return next((key.secret for key in self._keys if key.key_id == key_id), None)

    def rotate(self) -> SessionKey:
        """Adds a fresh key that signs from now on; the older keys still verify."""
        key = SessionKey.generate(self.key_ids)
        self._keys.append(key)
        self._verified.clear()
        return key

    def adopt(self, other: SessionKeys) -> bool:
        """Takes the keys of `other` (read again from the Store); True if they differ.

        The object stays the same, so everything holding it verifies and
        signs with the new set from now on.
        """
        if other._keys == self._keys:
            return False
        self._keys = list(other._keys)
        self._verified.clear()
        return True

    def verified(self, token: str) -> session_pb2.Session | None:
        """The session of a token these keys signed or verified before, or None."""
        found = self._verified.get(token)
        if found is not None:
            self._verified.move_to_end(token)
        return found

    def remember(self, token: str, session: session_pb2.Session) -> None:
        """Records a token as good for `session` (never changed afterwards)."""
        self._verified[token] = session
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)

    @classmethod
    def read_file(cls, state_dir: Path) -> SessionKeys | None:
        """The keys in `state_dir/session_keys.json`, None when there is no such file.

        Older servers kept their keys there; the Store now does. Raises
        BadKeysFile for a file that exists but cannot be used: ignoring it
        would log out every bot.
        """
        path = state_dir / KEYS_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if path.stat().st_mode & 0o077:
            log.warning("%s is readable by other users; it should be mode 0600", path)
        try:
            doc = json.loads(data)
            entries = doc["keys"]
            keys = [
                SessionKey(str(entry["id"]), base64.b64decode(entry["secret"], validate=True))
                for entry in entries
            ]
            return cls(keys)
        except (ValueError, KeyError, TypeError) as e:
            raise BadKeysFile(f"{path}: {e!r}") from e


def _us(ts: float) -> int:
    return round(ts * 1_000_000)


def new_session(
    bot_id: str,
    session_id: str,
    group: BotGroup,
    *,
    now: float,
    lifetime_secs: float,
    config_revision: str,
    server_version: str,
) -> session_pb2.Session:
    """A session for a bot that just passed handshake with `group`'s config."""
    return session_pb2.Session(
        bot_id=bot_id,
        session_id=session_id,
        expiry_us=_us(now + lifetime_secs),
        debug_info=session_pb2.DebugInfo(created_us=_us(now), server_version=server_version),
        bot_config=snapshot_of_group(group),
        handshake_config_hash=group.handshake_config_hash(),
        last_seen_config=config_revision,
    )


def marshal(session: session_pb2.Session, keys: SessionKeys) -> str:
    """The token for `session`: a tagged SessionToken proto in padded standard base64."""
    payload = session.SerializeToString(deterministic=True)
    key = keys.signing
    tag = hmac.new(key.secret, _MAC_CONTEXT + payload, hashlib.sha256).digest()
    token = session_pb2.SessionToken(
        hmac_tagged=session_pb2.HmacTagged(session=payload, hmac_sha256=tag, key_id=key.key_id)
    )
    text = base64.b64encode(token.SerializeToString(deterministic=True)).decode("ascii")
    if not _missing_fields(session):
        keys.remember(text, session_pb2.Session.FromString(payload))
    return text


def unmarshal(token: object, keys: SessionKeys) -> session_pb2.Session:
    """The session inside a token the bot echoed; raises BadSessionToken.

    Does not check expiry: whether an expired session is acceptable depends
    on the call (PROTOCOL.md 0.2.4 S3), see `is_expired`. The session
    returned may be shared with other calls: it must not be changed.
    """
    if token is None or token == "":
        raise BadSessionToken("no session")
    if not isinstance(token, str):
        raise BadSessionToken(f"the session is a {type(token).__name__}, not a string")
    known = keys.verified(token)
    if known is not None:
        return known
    if len(token) > _MAX_TOKEN_CHARS:
        raise BadSessionToken(f"the session is longer than {_MAX_TOKEN_CHARS} characters")
    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError) as e:
        # ValueError: non-ASCII characters; binascii.Error: bad alphabet or padding.
        raise BadSessionToken("the session is not base64") from e
    try:
        wrapper = session_pb2.SessionToken.FromString(raw)
    except DecodeError as e:
        raise BadSessionToken("the session does not parse") from e
    if wrapper.WhichOneof("kind") != "hmac_tagged":
        raise BadSessionToken("the session is not HMAC-tagged")
    tagged = wrapper.hmac_tagged
    secret = keys.secret(tagged.key_id)
    if secret is None:
        raise BadSessionToken(f"the session was signed with an unknown key {tagged.key_id!r}")
    expected = hmac.new(secret, _MAC_CONTEXT + tagged.session, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, tagged.hmac_sha256):
        raise BadSessionToken("the session's MAC does not match")
    try:
        session = session_pb2.Session.FromString(tagged.session)
    except DecodeError as e:
        raise BadSessionToken("the signed session does not parse") from e
    missing = _missing_fields(session)
    if missing:
        raise BadSessionToken(f"the session lacks {', '.join(missing)}")
    keys.remember(token, session)
    return session


def _missing_fields(session: session_pb2.Session) -> list[str]:
    """The fields a usable session must have and `session` lacks."""
    return [
        name
        for name, present in (
            ("bot_id", bool(session.bot_id)),
            ("session_id", bool(session.session_id)),
            ("expiry_us", session.expiry_us > 0),
            ("bot_config", session.HasField("bot_config")),
        )
        if not present
    ]


def is_expired(session: session_pb2.Session, now: float) -> bool:
    """True once `now` is past the session's expiry (at the expiry itself it is still valid)."""
    return _us(now) > session.expiry_us


def refresh(
    session: session_pb2.Session,
    *,
    now: float,
    lifetime_secs: float,
    group: BotGroup | None = None,
    config_revision: str | None = None,
) -> session_pb2.Session:
    """A copy of `session` that expires `lifetime_secs` after `now`.

    With `group`, the copy also takes the group's current auth rules and
    handshake config hash; with `config_revision`, it records that revision.
    """
    fresh = session_pb2.Session()
    fresh.CopyFrom(session)
    fresh.expiry_us = _us(now + lifetime_secs)
    if group is not None:
        fresh.bot_config.CopyFrom(snapshot_of_group(group))
        fresh.handshake_config_hash = group.handshake_config_hash()
    if config_revision is not None:
        fresh.last_seen_config = config_revision
    return fresh
