"""Turning a page's context into HTML: the Jinja environment, its filters, error pages.

Templates live in server/web/templates and are rendered with autoescape on
and StrictUndefined, so every value from a user, a bot or a task (names,
tags, dimensions, states, log text) is escaped and a misspelt variable is an
error, not an empty string. Every page goes out with a Content-Security-Policy
that allows only this server's own script and stylesheet, so even a value
that escaped escaping could not run.
"""

from __future__ import annotations

import datetime
import functools
import logging
import pathlib
import shlex
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from server.clock import Clock
from server.errors import DroverError
from server.scheduler import pending
from server.web import gate
from server.web.services import WEB

log = logging.getLogger("drover.web")

TEMPLATES = web.AppKey("web_templates", jinja2.Environment)
TEMPLATE_DIR = pathlib.Path(__file__).resolve().parent / "templates"
STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/ui/static"

# Pages may load only this server's script and stylesheet, post forms only to
# it, and be framed by no one (clickjacking of the action buttons).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show what the caller's token may see: never keep them in a shared cache.
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup_templates(app: web.Application, clock: Clock) -> None:
    """Creates the Jinja environment of the UI's templates on `app`."""
    filters: dict[str, Callable[..., str]] = {
        "ts": timestamp,
        "iso": iso,
        "ago": functools.partial(ago, clock),
        "secs": seconds,
        "shell": shlex.join,
    }
    aiohttp_jinja2.setup(
        app,
        app_key=TEMPLATES,
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        default_helpers=False,
        filters=filters,
    )
    env = app[TEMPLATES]
    env.globals["pending_reason"] = pending.reason
    env.globals["static"] = STATIC_PREFIX


async def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    me: Any = None,
) -> web.Response:
    """The page `template` filled with `context`, plus what every page shows.

    `me` is the caller's Principal when the handler has it; otherwise the
    header asks the gate who the caller is.
    """
    services = request.app[WEB]
    if me is None:
        me = await services.gate.whoami(request)
    full = {
        "me": me,
        "has_cookie": gate.has_token_cookie(request),
        "csrf": gate.csrf_token(request),
        "here": request.path_qs,
        "config_error": services.config.error,
        "config_revision": services.config.current.revision,
        "server_version": services.server_version,
        **context,
    }
    response = aiohttp_jinja2.render_template(
        template, request, full, app_key=TEMPLATES, status=status
    )
    response.headers.update(SECURITY_HEADERS)
    gate.set_csrf_cookie(response, request)
    return response


def page(handler: Handler) -> Handler:
    """Makes a handler's domain errors HTML pages with their status (the API's are JSON)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except DroverError as e:
            return await error_page(request, e.status, str(e))

    return wrapped


async def error_page(request: web.Request, status: int, message: str) -> web.Response:
    """A page saying what went wrong; a refusal (401, 403) comes with the sign-in form."""
    if status >= 500:
        log.exception("error serving %s", request.path)
    response = await render(
        request,
        "error.html",
        {"status": status, "message": message, "sign_in": status in (401, 403)},
        status=status,
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="drover"'
    return response


def timestamp(ts: float | None) -> str:
    """A time as "2026-01-02 03:04:05 UTC"; "-" for none."""
    if not ts:
        return "-"
    when = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(ts: float) -> str:
    """A time in ISO 8601, for a <time datetime> attribute."""
    when = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def ago(clock: Clock, ts: float | None) -> str:
    """How long ago `ts` was ("5 s ago", "in 3 min"); "-" for none."""
    if not ts:
        return "-"
    delta = clock.now() - ts
    text = seconds(abs(delta), precise=False)
    return f"{text} ago" if delta >= 0 else f"in {text}"


def seconds(value: float | None, precise: bool = True) -> str:
    """A duration as "1.5 s", "2 min 3 s", "4 h 5 min" or "3 d 2 h"; "-" for none."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f} s" if precise and value < 10 else f"{int(value)} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
