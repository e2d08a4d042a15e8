"""The client API's verifier of task access tokens (`drt_`, server/auth/access_tokens.py).

It is one of the verifiers the API authenticator tries in order: a token
of another kind is not its business (None); a `drt_` token that is forged,
expired, or whose task has ended is refused with BadAccessToken (401) and
a message saying which; a valid one becomes the principal of its service
account, `service_account:<email>`.

What such a principal may do (DESIGN.md 8), enforced by the API layer
(server/auth/access.py):
- read, as a viewer does (role "viewer");
- report structured results for the task it was minted for, and only that
  one (the principal carries `task_id`);
- create and control tasks only in pools whose pools.cfg `schedulers` name
  `service_account:<email>` explicitly: it holds no scheduler or admin role,
  so never in a pool without an ACL and never an admin operation. (The
  access layer does not admit this case yet: it asks for the scheduler role
  before it looks at the ACL, so for now a service account only reads and
  reports.)

A task token is good only while its run is the task's current run and
RUNNING, and while the task's pool still allows the account; a system
token only while the bot's group still names the account. Both checks run
on every call, so ending a task or editing the configs revokes at once.
"""

from __future__ import annotations

from server.auth import service_accounts
from server.auth.access_tokens import SYSTEM_ACCOUNT, AccessClaims, AccessTokens, BadAccessToken
from server.auth.principal import SERVICE_ACCOUNT_PREFIX, VIEWER, Principal, implied
from server.config.model import ConfigSource
from server.errors import PermissionDenied
from server.model import TaskState
from server.store.base import Store

# Reads only: scheduling rights come from pools.cfg ACLs naming the account.
ROLE = VIEWER


class AccessTokenVerifier:
    """Checks `drt_` tokens against their signature, their expiry and the live state."""

    def __init__(self, tokens: AccessTokens, store: Store, config: ConfigSource) -> None:
        self._tokens = tokens
        self._store = store
        self._config = config

    async def verify(self, token: str) -> Principal | None:
        """The principal of a good `drt_` token; None for a token of another kind.

        Raises BadAccessToken (401) saying why a `drt_` token is refused.
        """
        claims = await self.check(token)
        if claims is None:
            return None
        return Principal(identity=identity_of(claims), roles=implied(ROLE), task_id=claims.task_id)

    async def check(self, token: str) -> AccessClaims | None:
        """The claims of a token that is good right now; None for a token of another kind.

        Raises BadAccessToken saying why a `drt_` token is not good.
        """
        claims = await self._tokens.parse(token)
        if claims is None:
            return None
        snapshot = self._config.current
        if claims.account_id == SYSTEM_ACCOUNT:
            group = snapshot.group_for(claims.bot_id)
            if group is None or group.system_service_account != claims.service_account:
                raise BadAccessToken(
                    f"bot {claims.bot_id!r} no longer has system account {claims.service_account}"
                )
            return claims
        result = await self._store.get_result(claims.task_id)
        if result is None or result.run_id != claims.run_id or result.bot_id != claims.bot_id:
            raise BadAccessToken(f"run {claims.run_id} is no longer its task's current run")
        if result.state is not TaskState.RUNNING:
            raise BadAccessToken(f"task {claims.task_id} has ended ({result.state.name})")
        try:
            service_accounts.check_allowed(snapshot, claims.service_account, [claims.pool])
        except PermissionDenied as e:
            raise BadAccessToken(e.detail) from e
        return claims


def identity_of(claims: AccessClaims) -> str:
    """The identity the bearer acts as, as pools.cfg `schedulers` names it."""
    return SERVICE_ACCOUNT_PREFIX + claims.service_account
