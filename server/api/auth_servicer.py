"""drover.api.v1.Auth: API tokens (create, list, revoke) and who the caller is.

Served like the other servicers, behind the guard; the token itself leaves
the server only in CreateToken's answer.
"""

from __future__ import annotations

from protos.api import auth_pb2
from server.api import convert
from server.api.transcoder import CallContext
from server.auth.principal import ROLE_ORDER
from server.auth.tokens import ApiTokenService
from server.model import ApiToken


def token_info(token: ApiToken) -> auth_pb2.TokenInfo:
    """A stored token as the API shows it (without its digest)."""
    return auth_pb2.TokenInfo(
        token_id=token.token_id,
        name=token.name,
        role=token.role,
        created_ts=convert.timestamp(token.created_ts),
        created_by=token.created_by,
        expires_ts=convert.timestamp(token.expires_ts),
        revoked_ts=convert.timestamp(token.revoked_ts),
    )


class AuthServicer:
    """drover.api.v1.Auth."""

    def __init__(self, tokens: ApiTokenService) -> None:
        self._tokens = tokens

    async def CreateToken(
        self, req: auth_pb2.CreateTokenRequest, ctx: CallContext
    ) -> auth_pb2.CreatedToken:
        token, record = await self._tokens.create(
            req.name,
            req.role,
            created_by=ctx.principal.identity,
            expires_in_secs=req.expires_in_secs,
        )
        return auth_pb2.CreatedToken(token=token, info=token_info(record))

    async def ListTokens(
        self, req: auth_pb2.ListTokensRequest, ctx: CallContext
    ) -> auth_pb2.ListTokensResponse:
        tokens = await self._tokens.list_tokens()
        return auth_pb2.ListTokensResponse(items=[token_info(t) for t in tokens])

    async def RevokeToken(
        self, req: auth_pb2.TokenIdRequest, ctx: CallContext
    ) -> auth_pb2.TokenInfo:
        return token_info(await self._tokens.revoke(req.token_id))

    async def WhoAmI(
        self, req: auth_pb2.WhoAmIRequest, ctx: CallContext
    ) -> auth_pb2.WhoAmIResponse:
        principal = ctx.principal
        return auth_pb2.WhoAmIResponse(
            identity=principal.identity,
            roles=[r for r in ROLE_ORDER if r in principal.roles],
            task_id=principal.task_id,
        )
