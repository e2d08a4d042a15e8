"""aiohttp handlers of the bot API: parse, call one service method, serialize.

Paths, status codes and content types are exactly PROTOCOL.md's (section 0
first): JSON answers for every POST, a JSON 404 for unknown API paths, plain
"Server up" for server_ping, the archive as application/octet-stream.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from server import jsonio
from server.appkeys import BOOTSTRAP_SERVICE, BOT_SERVICE, BOTCODE, RUN_SERVICE
from server.botapi import messages
from server.errors import InvalidRequest

BOT_API = "/swarming/api/v1/bot"


async def read_json(request: web.Request) -> Mapping[str, Any]:
    """Reads a JSON object body; anything else is a 400 that says what was wrong."""
    try:
        body = jsonio.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"the body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def credentials(request: web.Request) -> messages.BotCredentials:
    """The caller's address and headers, for bot authentication."""
    return messages.BotCredentials(remote_ip=request.remote or "", headers=request.headers)


def _json(payload: Mapping[str, Any]) -> web.Response:
    return web.Response(
        body=jsonio.dumps_bytes(payload), content_type="application/json", charset="utf-8"
    )


Parser = Callable[[Mapping[str, Any]], Any]


def bot_call(
    parse: Parser, call: Callable[[web.Request, Any], Awaitable[Mapping[str, Any]]]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Builds a handler: parse the JSON body, call the service, answer JSON."""

    async def handler(request: web.Request) -> web.Response:
        parsed = parse(await read_json(request))
        return _json(await call(request, parsed))

    return handler


async def server_ping(request: web.Request) -> web.Response:
    """Always 200 (PROTOCOL.md 0.2.2 A4): is_fine depends on it."""
    return web.Response(text="Server up")


async def bot_code_versioned(request: web.Request) -> web.StreamResponse:
    """Serves the archive with this digest; anything else redirects to /bot_code."""
    if request.query_string:
        raise web.HTTPFound(request.path)
    archive = request.app[BOTCODE].get(request.match_info["digest"])
    if archive is None:
        raise web.HTTPFound("/bot_code")
    return web.Response(
        body=archive.data,
        content_type="application/octet-stream",
        headers={
            "Content-Disposition": 'attachment; filename="swarming_bot.zip"',
            "Cache-Control": "public, max-age=3600",
        },
    )


async def bot_code(request: web.Request) -> web.StreamResponse:
    """Redirects an admitted caller (bootstrap token or bot credentials) to its archive."""
    bot_id = request.query.get("bot_id") or request.headers.get("X-Luci-Swarming-Bot-ID") or ""
    digest = await request.app[BOOTSTRAP_SERVICE].admit_bot_code(
        bot_id, credentials(request), request.query.get("tok", "")
    )
    raise web.HTTPFound(f"{BOT_API}/bot_code/{digest}")


def routes() -> list[web.RouteDef]:
    """The bot API routes."""

    def bots(request: web.Request) -> Any:
        return request.app[BOT_SERVICE]

    def runs(request: web.Request) -> Any:
        return request.app[RUN_SERVICE]

    def svc(
        which: Callable[[web.Request], Any], method: str
    ) -> Callable[[web.Request, Any], Awaitable[Mapping[str, Any]]]:
        async def call(request: web.Request, parsed: Any) -> Mapping[str, Any]:
            result: Mapping[str, Any] = await getattr(which(request), method)(
                parsed, credentials(request)
            )
            return result

        return call

    task_update = bot_call(messages.parse_task_update, svc(runs, "task_update"))
    task_error = bot_call(messages.parse_task_error, svc(runs, "task_error"))
    digest = "{digest:[0-9a-fA-F]{40}|[0-9a-fA-F]{64}}"
    return [
        web.get(f"{BOT_API}/server_ping", server_ping),
        web.get(f"{BOT_API}/bot_code/{digest}", bot_code_versioned),
        web.get("/bot_code", bot_code),
        web.post(
            f"{BOT_API}/handshake", bot_call(messages.parse_handshake, svc(bots, "handshake"))
        ),
        web.post(f"{BOT_API}/poll", bot_call(messages.parse_poll, svc(bots, "poll"))),
        web.post(f"{BOT_API}/event", bot_call(messages.parse_event, svc(bots, "event"))),
        web.post(f"{BOT_API}/claim", bot_call(messages.parse_claim, svc(runs, "claim"))),
        web.post(f"{BOT_API}/task_update", task_update),
        web.post(f"{BOT_API}/task_update/{{run_id}}", task_update),
        web.post(f"{BOT_API}/task_error", task_error),
        web.post(f"{BOT_API}/task_error/{{run_id}}", task_error),
    ]
