"""The one error middleware: domain errors become statuses with JSON bodies.

Bot API paths answer `{"error": message}`; client API paths answer
`{"error": {"code": ..., "message": ...}}` (DESIGN.md 4.2). Unknown paths under
an API prefix answer a JSON 404, which a stock bot treats as final rather than
retrying for minutes (PROTOCOL.md 0.2.1 T4).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.errors import DroverError

log = logging.getLogger("drover.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_body(path: str, status: int, code: str, message: str) -> dict[str, object]:
    """The JSON error document for a path."""
    if path.startswith("/swarming/"):
        return {"error": message}
    return {"error": {"code": code, "message": message}}


def _is_api(path: str) -> bool:
    return path.startswith(("/api/", "/swarming/api/", "/prpc/"))


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Maps DroverError and aiohttp's 404/405/413 on API paths to JSON errors."""
    try:
        return await handler(request)
    except DroverError as e:
        if e.status >= 500:
            log.exception("error serving %s", request.path)
        body = error_body(request.path, e.status, e.grpc_code, str(e))
        headers = None
        if e.status == 401 and request.path.startswith("/api/"):
            # RFC 6750: a 401 of the client API names the scheme it wants.
            headers = {"WWW-Authenticate": 'Bearer realm="drover"'}
        return web.json_response(body, status=e.status, headers=headers)
    except web.HTTPException as e:
        if e.status in (404, 405, 413) and _is_api(request.path):
            code = {404: "NOT_FOUND", 405: "UNIMPLEMENTED", 413: "INVALID_ARGUMENT"}[e.status]
            message = {
                404: f"no such API path: {request.path}",
                405: f"{request.method} is not allowed on {request.path}",
                413: "the request body is too large",
            }[e.status]
            return web.json_response(
                error_body(request.path, e.status, code, message), status=e.status
            )
        raise
