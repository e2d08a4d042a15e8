"""API tokens: their form, minting them, the Store's records, and their verifier.

A token reads "drv_<token_id>_<secret>": `token_id` (16 hex digits) names
its record and may be shown anywhere (listings, logs, `revoke`); the secret
is 32 random bytes, base64url. The Store keeps the SHA-256 of the whole
token, never the token: a leaked database lets nobody call the API. A plain
digest is right for a secret of 256 random bits (there is nothing to guess,
unlike a password, so no slow hash is needed); verification compares the
digests in constant time.

The first admin token comes from `drover token create --state-dir` on the
server's machine, which opens the Store directly: whoever can read the state
directory holds the server's keys already, so it needs no token of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

from server.auth.authenticator import ExpiredToken, InvalidToken, RevokedToken
from server.auth.principal import ROLE_ORDER, USER_NAME_RE, Principal
from server.clock import Clock
from server.errors import InvalidRequest, NotFound
from server.model import ApiToken
from server.store.base import Store

TOKEN_PREFIX = "drv_"
_TOKEN_RE = re.compile(r"drv_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
# `created_by` of tokens made on the server's machine without a token.
LOCAL = "local"
# The longest lifetime a token may be given (ten years); 0 means no expiry.
MAX_LIFETIME_SECS = 10 * 365 * 86400


class TokenNotFound(NotFound):
    """No such API token."""


def digest(token: str) -> str:
    """The hex SHA-256 the Store keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def iso(ts: float) -> str:
    """A time in messages: RFC 3339, UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def mint(
    name: str, role: str, *, now: float, created_by: str, expires_in_secs: int = 0
) -> tuple[str, ApiToken]:
    """A new token and the record to store for it. Raises InvalidRequest naming the field."""
    if not USER_NAME_RE.fullmatch(name):
        raise InvalidRequest(
            f"name {name!r}: letters, digits and . _ @ + - (at most 128), "
            "starting with a letter or digit"
        )
    if role not in ROLE_ORDER:
        raise InvalidRequest(f"role {role!r} is not one of {', '.join(ROLE_ORDER)}")
    if not 0 <= expires_in_secs <= MAX_LIFETIME_SECS:
        raise InvalidRequest(
            f"expires_in_secs must be in 0..{MAX_LIFETIME_SECS} (0: never), not {expires_in_secs}"
        )
    token_id = secrets.token_hex(8)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    record = ApiToken(
        token_id=token_id,
        name=name,
        role=role,
        sha256=digest(token),
        created_ts=now,
        created_by=created_by,
        expires_ts=now + expires_in_secs if expires_in_secs else None,
    )
    return token, record


class ApiTokenVerifier:
    """The Verifier of API tokens, against their records in the Store."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def verify(self, token: str) -> Principal | None:
        """ "user:<name>" with the token's role; None for a token that is not "drv_..."."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            raise InvalidToken("it starts with drv_ but is not an API token as issued")
        record = await self._store.get_api_token(match.group(1))
        # Unknown and wrong secret read the same, so IDs cannot be probed.
        if record is None or not hmac.compare_digest(record.sha256, digest(token)):
            raise InvalidToken("this server never issued it")
        if record.revoked_ts is not None:
            raise RevokedToken(f"API token {record.token_id} at {iso(record.revoked_ts)}")
        if record.expires_ts is not None and self._clock.now() >= record.expires_ts:
            raise ExpiredToken(f"API token {record.token_id} at {iso(record.expires_ts)}")
        return Principal.user(record.name, record.role)


class ApiTokenService:
    """Creates, lists and revokes API tokens: the Auth RPCs and `drover token`."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(
        self, name: str, role: str, *, created_by: str, expires_in_secs: int = 0
    ) -> tuple[str, ApiToken]:
        """Mints and stores a token; returns (the token, its record). The token is not kept."""
        token, record = mint(
            name,
            role,
            now=self._clock.now(),
            created_by=created_by,
            expires_in_secs=expires_in_secs,
        )
        await self._store.add_api_token(record)
        return token, record

    async def list_tokens(self) -> list[ApiToken]:
        """Every token, oldest first, revoked ones included."""
        return await self._store.list_api_tokens()

    async def revoke(self, token_id: str) -> ApiToken:
        """Revokes a token (again: no change). Raises TokenNotFound."""
        # The whole token is accepted too, so a leaked one can be revoked as found.
        match = _TOKEN_RE.fullmatch(token_id)
        revoked = await self._store.revoke_api_token(
            match.group(1) if match else token_id, self._clock.now()
        )
        if revoked is None:
            raise TokenNotFound(token_id if match is None else match.group(1))
        return revoked
