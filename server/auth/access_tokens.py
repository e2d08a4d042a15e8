"""Task access tokens: what `oauth_token` mints (DESIGN.md 8, PROTOCOL.md 1.10).

A `drt_` token stands for a service account: a task's own account (for
that run of that task) or a bot group's system account (for that bot).
It is short-lived and HMAC-signed (server/auth/signed_tokens.py) with keys
that rotate in the Store, so every replica mints and verifies the same
tokens. Only Drover's own client API accepts it: AccessTokenVerifier
(server/auth/access_verifier.py) turns a valid one into the account's
principal, refusing it once its task has ended.
"""

from __future__ import annotations

import dataclasses

from server.auth import signed_tokens
from server.auth.keyring import KeyPolicy, Keyring
from server.clock import Clock
from server.errors import Unauthenticated

PREFIX = "drt_"
PURPOSE = "access_token"
_CONTEXT = b"drover.AccessToken"
# Short enough that a leaked token is soon useless, long enough that a task
# asks for a new one only every few minutes (the bot hands out tokens with
# at least 5 minutes left, so a task sees 10 of these 15).
LIFETIME_SECS = 15 * 60
POLICY = KeyPolicy(
    purpose=PURPOSE,
    algorithm="HS256",
    rotation_secs=24 * 3600,
    max_token_secs=LIFETIME_SECS,
    publish_ahead_secs=3600,
)
TASK_ACCOUNT = "task"
SYSTEM_ACCOUNT = "system"


class BadAccessToken(Unauthenticated):
    """The access token is not valid."""


@dataclasses.dataclass(frozen=True)
class AccessClaims:
    """What an access token says about its bearer."""

    service_account: str
    # "task" (acting for `task_id`'s run `run_id`) or "system" (for the bot).
    account_id: str
    bot_id: str
    pool: str
    issued_ts: float
    expires_ts: float
    task_id: str = ""
    run_id: str = ""


class AccessTokens:
    """Mints access tokens and checks their signature and expiry."""

    def __init__(self, keyring: Keyring, clock: Clock) -> None:
        self._keyring = keyring
        self._clock = clock

    async def mint(
        self,
        *,
        service_account: str,
        account_id: str,
        bot_id: str,
        pool: str,
        task_id: str = "",
        run_id: str = "",
    ) -> tuple[str, AccessClaims]:
        """A new token and what it says; it expires LIFETIME_SECS from now."""
        now = self._clock.now()
        claims = AccessClaims(
            service_account=service_account,
            account_id=account_id,
            bot_id=bot_id,
            pool=pool,
            issued_ts=now,
            expires_ts=now + LIFETIME_SECS,
            task_id=task_id,
            run_id=run_id,
        )
        body = {
            "sub": claims.service_account,
            "acct": claims.account_id,
            "bot": claims.bot_id,
            "pool": claims.pool,
            "task": claims.task_id,
            "run": claims.run_id,
            "iat": claims.issued_ts,
            "exp": claims.expires_ts,
        }
        return await signed_tokens.seal(self._keyring, PREFIX, _CONTEXT, body), claims

    async def parse(self, token: str) -> AccessClaims | None:
        """The claims of a valid unexpired token; None for a token of another kind.

        Raises BadAccessToken for a `drt_` token that is forged, expired or
        signed by a key that no longer verifies.
        """
        body = await signed_tokens.unseal(
            self._keyring, PREFIX, _CONTEXT, token, self._clock, BadAccessToken
        )
        if body is None:
            return None
        try:
            claims = AccessClaims(
                service_account=_text(body, "sub"),
                account_id=_text(body, "acct"),
                bot_id=_text(body, "bot"),
                pool=_text(body, "pool"),
                issued_ts=float(body["iat"]),
                expires_ts=float(body["exp"]),
                task_id=_text(body, "task"),
                run_id=_text(body, "run"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BadAccessToken("the token's claims are incomplete") from e
        if claims.account_id not in (TASK_ACCOUNT, SYSTEM_ACCOUNT) or not claims.service_account:
            raise BadAccessToken("the token's claims are incomplete")
        return claims


def _text(body: dict[str, object], name: str) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
    return value
