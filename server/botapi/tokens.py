"""The token service: `oauth_token` and `id_token` (PROTOCOL.md 1.10, DESIGN.md 8).

A bot asks, with its session, for a token of one of two accounts:

- `task`: the service account of the task it runs now. The body's `task_id`
  must be the bot's current run of a RUNNING task, and the task's pool must
  still allow the account (pools.cfg), so a finished, restarted or foreign
  run gets nothing.
- `system`: the `system_service_account` of the bot's group in bots.cfg.

An account of "none" or "bot" is answered as such, with no token (the bot
then uses its own credentials, or none). Refusals are 4xx with a reason
(the stock bot passes them to the task, they never kill it): 400 for a
malformed request, 401 for a bad session, 403 for everything the session
may not have. Tokens are never logged; each mint logs who got what.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from protos.internal import session_pb2
from server import ids
from server.auth import service_accounts, session
from server.auth.access_tokens import SYSTEM_ACCOUNT, TASK_ACCOUNT, AccessTokens
from server.auth.id_tokens import IdTokens
from server.auth.session import BadSessionToken
from server.botapi.context import BotApiContext, UnknownBot
from server.botapi.messages import BotCredentials
from server.botapi.runs import is_current_run
from server.errors import InvalidRequest, PermissionDenied
from server.model import TaskState

log = logging.getLogger("drover.botapi")

MAX_AUDIENCE_CHARS = 1024
MAX_SCOPES = 32


class TokenRefused(PermissionDenied):
    """No token for this caller."""


@dataclasses.dataclass(frozen=True)
class TokenRequest:
    """An `oauth_token` or `id_token` call."""

    session: str | None
    account_id: str
    bot_id: str
    run_id: str
    scopes: tuple[str, ...] = ()
    audience: str = ""


@dataclasses.dataclass(frozen=True)
class Grant:
    """Who a token is for, once every check passed."""

    service_account: str
    account_id: str
    bot_id: str
    pool: str
    task_id: str = ""
    run_id: str = ""


def parse_token_request(body: Mapping[str, Any], *, needs_audience: bool) -> TokenRequest:
    """Parses either call; raises InvalidRequest naming the field that is wrong."""
    account_id = body.get("account_id")
    if account_id not in (TASK_ACCOUNT, SYSTEM_ACCOUNT):
        raise InvalidRequest(f"account_id must be 'task' or 'system', not {account_id!r}")
    run_id = body.get("task_id") or ""
    if not isinstance(run_id, str):
        raise InvalidRequest("task_id must be a string")
    if account_id == TASK_ACCOUNT and not (ids.is_task_id(run_id) and not run_id.endswith("0")):
        raise InvalidRequest(f"task_id {run_id!r} is not a run ID (account 'task' needs one)")
    bot_id = body.get("id") or ""
    if not isinstance(bot_id, str):
        raise InvalidRequest("id must be a string")
    scopes = body.get("scopes") or []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidRequest("scopes must be a list of strings")
    if len(scopes) > MAX_SCOPES:
        raise InvalidRequest(f"scopes: at most {MAX_SCOPES} are allowed")
    audience = body.get("audience") or ""
    if not isinstance(audience, str) or len(audience) > MAX_AUDIENCE_CHARS:
        raise InvalidRequest(
            f"audience must be a string of at most {MAX_AUDIENCE_CHARS} characters"
        )
    if needs_audience and not audience.strip():
        raise InvalidRequest("audience is required")
    token = body.get("session")
    return TokenRequest(
        session=token if isinstance(token, str) and token else None,
        account_id=str(account_id),
        bot_id=bot_id,
        run_id=run_id,
        scopes=tuple(scopes),
        audience=audience,
    )


def parse_oauth_token(body: Mapping[str, Any]) -> TokenRequest:
    """Parses an `oauth_token` call."""
    return parse_token_request(body, needs_audience=False)


def parse_id_token(body: Mapping[str, Any]) -> TokenRequest:
    """Parses an `id_token` call (`audience` required)."""
    return parse_token_request(body, needs_audience=True)


class TokenService:
    """Mints tokens for bots and their tasks."""

    def __init__(self, ctx: BotApiContext, access: AccessTokens, id_tokens: IdTokens) -> None:
        self._ctx = ctx
        self._access = access
        self._id_tokens = id_tokens

    async def oauth_token(self, req: TokenRequest, creds: BotCredentials) -> dict[str, Any]:
        """An access token for Drover's API, standing for the account."""
        grant = await self._grant(req, creds)
        if not service_accounts.is_mintable(grant.service_account):
            return {"service_account": grant.service_account}
        token, claims = await self._access.mint(
            service_account=grant.service_account,
            account_id=grant.account_id,
            bot_id=grant.bot_id,
            pool=grant.pool,
            task_id=grant.task_id,
            run_id=grant.run_id,
        )
        _log_mint("access", grant)
        return {
            "access_token": token,
            "expiry": int(claims.expires_ts),
            "service_account": grant.service_account,
        }

    async def id_token(self, req: TokenRequest, creds: BotCredentials) -> dict[str, Any]:
        """An ID token (JWT) for the audience, standing for the account."""
        grant = await self._grant(req, creds)
        if not service_accounts.is_mintable(grant.service_account):
            return {"service_account": grant.service_account}
        token, expiry = await self._id_tokens.mint(
            subject=grant.service_account,
            audience=req.audience,
            extra={
                "task_id": grant.task_id,
                "run_id": grant.run_id,
                "bot_id": grant.bot_id,
                "pool": grant.pool,
            },
        )
        _log_mint("ID", grant)
        return {"expiry": int(expiry), "id_token": token, "service_account": grant.service_account}

    async def _grant(self, req: TokenRequest, creds: BotCredentials) -> Grant:
        sess = self._session(req, creds)
        if req.account_id == SYSTEM_ACCOUNT:
            return await self._system_grant(sess)
        return await self._task_grant(sess, req.run_id)

    def _session(self, req: TokenRequest, creds: BotCredentials) -> session_pb2.Session:
        """The caller's session: valid, for the bot the body names, from its credentials."""
        if req.session is None:
            raise BadSessionToken("no session")
        sess = session.unmarshal(req.session, self._ctx.keys)
        if req.bot_id and req.bot_id != sess.bot_id:
            raise TokenRefused(f"the session belongs to bot {sess.bot_id!r}, not {req.bot_id!r}")
        self._ctx.recheck_credentials(sess, creds)
        return sess

    async def _system_grant(self, sess: session_pb2.Session) -> Grant:
        # Unlike a task's calls (PROTOCOL.md 0.2.4 S3), nothing ties a system
        # token to a run the bot must be able to finish: a session past its
        # expiry (a bot that stopped polling) gets no more of them.
        if session.is_expired(sess, self._ctx.clock.now()):
            raise BadSessionToken("the session has expired")
        group = self._ctx.config.current.group_for(sess.bot_id)
        if group is None:
            raise UnknownBot(f"no bot group in bots.cfg admits {sess.bot_id!r}")
        bot = await self._ctx.store.get_bot(sess.bot_id)
        pools = bot.dimensions.get("pool", []) if bot else group.dimensions.get("pool", [])
        account = group.system_service_account or service_accounts.NO_ACCOUNT
        return Grant(account, SYSTEM_ACCOUNT, sess.bot_id, pools[0] if pools else "")

    async def _task_grant(self, sess: session_pb2.Session, run_id: str) -> Grant:
        # The session's expiry is not checked: like task_update, a run's calls
        # must work for the run's whole life (PROTOCOL.md 0.2.4 S3), and being
        # the bot's current, running run is the stronger condition.
        task_id, try_number = ids.split_run_id(run_id)
        result = await self._ctx.store.get_result(task_id)
        if result is None or not is_current_run(result, sess.bot_id, try_number):
            raise TokenRefused(f"task {run_id} is not the current run of bot {sess.bot_id!r}")
        if result.state is not TaskState.RUNNING:
            raise TokenRefused(f"task {run_id} has ended ({result.state.name})")
        request = await self._ctx.store.get_request(task_id)
        assert request is not None, "a stored result always has its request"
        pool = request.slices[result.current_slice].properties.pool
        account = request.service_account
        service_accounts.check_allowed(self._ctx.config.current, account, [pool])
        return Grant(account, TASK_ACCOUNT, sess.bot_id, pool, task_id, result.run_id)


def _log_mint(kind: str, grant: Grant) -> None:
    # Who got a token of which account, never the token itself.
    log.info(
        "minted %s token of %s account %s for bot %s%s",
        kind,
        grant.account_id,
        grant.service_account,
        grant.bot_id,
        f" task {grant.run_id}" if grant.run_id else "",
    )
