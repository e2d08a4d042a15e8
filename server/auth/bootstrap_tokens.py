"""Bootstrap tokens: one short-lived secret that lets a new machine join the fleet.

`drover bootstrap-token` mints one; `GET /bootstrap?tok=...` answers a script
that downloads the bot code with it (`GET /bot_code?tok=...`) and starts the
bot (PROTOCOL.md 1.3). A `drb_` token is HMAC-signed like the access tokens
(server/auth/signed_tokens.py), with keys of its own in the Store, so any
replica accepts it and the CLI can mint one offline against the same Store.
It may be used any number of times until it expires, like Swarming's. It
only opens the bot code: the bot still needs its bots.cfg credentials to
handshake, so a leaked one lets a stranger read the bot code and no more.
"""

from __future__ import annotations

import secrets

from server.auth import signed_tokens
from server.auth.keyring import KeyPolicy, Keyring
from server.clock import Clock
from server.errors import InvalidRequest, PermissionDenied

PREFIX = "drb_"
PURPOSE = "bootstrap_token"
_CONTEXT = b"drover.BootstrapToken"
DEFAULT_LIFETIME_SECS = 3600
MAX_LIFETIME_SECS = 7 * 24 * 3600
POLICY = KeyPolicy(
    purpose=PURPOSE,
    algorithm="HS256",
    rotation_secs=7 * 24 * 3600,
    max_token_secs=MAX_LIFETIME_SECS,
    publish_ahead_secs=3600,
)


class BadBootstrapToken(PermissionDenied):
    """The bootstrap token is not valid."""


class BootstrapTokens:
    """Mints and checks bootstrap tokens."""

    def __init__(self, keyring: Keyring, clock: Clock) -> None:
        self._keyring = keyring
        self._clock = clock

    async def mint(self, lifetime_secs: float = DEFAULT_LIFETIME_SECS) -> tuple[str, float]:
        """A new token and its expiry. Raises InvalidRequest for a lifetime out of range."""
        if not 60 <= lifetime_secs <= MAX_LIFETIME_SECS:
            raise InvalidRequest(
                f"a bootstrap token lives 60..{MAX_LIFETIME_SECS} s, not {lifetime_secs:g}"
            )
        now = self._clock.now()
        expiry = now + lifetime_secs
        # The nonce makes every token distinct, even two minted in the same instant.
        claims = {"iat": now, "exp": expiry, "nonce": secrets.token_hex(8)}
        return await signed_tokens.seal(self._keyring, PREFIX, _CONTEXT, claims), expiry

    async def check(self, token: str) -> None:
        """Returns if `token` is a valid unexpired bootstrap token; raises BadBootstrapToken."""
        claims = await signed_tokens.unseal(
            self._keyring, PREFIX, _CONTEXT, token, self._clock, BadBootstrapToken
        )
        if claims is None:
            raise BadBootstrapToken("it is not a bootstrap token (they start with drb_)")
