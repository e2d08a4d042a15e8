"""aiohttp handlers of minted tokens: the bot's token calls, OpenID discovery, /bootstrap.

Thin like the other bot handlers (server/botapi/handlers.py): parse, one
service call, serialize. Token calls answer JSON; the discovery document
and the key set are public and cacheable; /bootstrap answers a Python script.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.appkeys import BOOTSTRAP_SERVICE, ID_TOKENS, TOKEN_SERVICE
from server.auth.id_tokens import DISCOVERY_PATH, JWKS_PATH
from server.botapi import tokens
from server.botapi.handlers import BOT_API, bot_call, credentials

# Verifiers may keep the key set this long; new keys are published hours
# before they sign (server/auth/id_tokens.py), so a cached copy is never short.
JWKS_MAX_AGE_SECS = 3600


async def _oauth_token(request: web.Request, parsed: Any) -> dict[str, Any]:
    return await request.app[TOKEN_SERVICE].oauth_token(parsed, credentials(request))


async def _id_token(request: web.Request, parsed: Any) -> dict[str, Any]:
    return await request.app[TOKEN_SERVICE].id_token(parsed, credentials(request))


async def openid_configuration(request: web.Request) -> web.Response:
    """The OpenID provider metadata: the issuer and where its keys are."""
    return web.json_response(
        request.app[ID_TOKENS].discovery(),
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECS}"},
    )


async def jwks(request: web.Request) -> web.Response:
    """The public keys that verify ID tokens (current, next, and recently retired)."""
    return web.json_response(
        await request.app[ID_TOKENS].jwks(),
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECS}"},
    )


async def bootstrap(request: web.Request) -> web.Response:
    """A script that downloads the bot code and starts the bot (PROTOCOL.md 1.3)."""
    script = await request.app[BOOTSTRAP_SERVICE].script(
        credentials(request), request.query.get("tok", "")
    )
    # The script carries a token: no proxy or browser may keep a copy.
    return web.Response(
        text=script, content_type="text/x-python", headers={"Cache-Control": "no-store"}
    )


def routes() -> list[web.RouteDef]:
    """The token routes."""
    return [
        web.post(f"{BOT_API}/oauth_token", bot_call(tokens.parse_oauth_token, _oauth_token)),
        web.post(f"{BOT_API}/id_token", bot_call(tokens.parse_id_token, _id_token)),
        web.get(DISCOVERY_PATH, openid_configuration),
        web.get(JWKS_PATH, jwks),
        web.get("/bootstrap", bootstrap),
    ]
