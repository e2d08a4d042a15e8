"""Signing in and out: an API token kept in an HttpOnly cookie (server/web/gate.py).

The sign-in form takes a token as `drover token create` printed it; the
server checks it like any API call would before keeping it, so a typo is
told at once rather than on the next page.
"""

from __future__ import annotations

from aiohttp import web

from server.errors import Unauthenticated
from server.web import gate
from server.web.render import page, render
from server.web.services import WEB


def local_path(target: object) -> str:
    """`target` if it is a path on this server, else "/" (no open redirect).

    Control characters are refused too: a URL parser drops tabs and line
    breaks, so "/\t/evil.example" would become "//evil.example".
    """
    if (
        isinstance(target, str)
        and target.isprintable()
        and target.startswith("/")
        and not target.startswith(("//", "/\\"))
    ):
        return target
    return "/"


@page
async def sign_in_form(request: web.Request) -> web.StreamResponse:
    """The sign-in form, and who the browser is signed in as."""
    context = {"next": local_path(request.query.get("next", "/")), "refused": ""}
    return await render(request, "signin.html", context)


@page
async def sign_in(request: web.Request) -> web.StreamResponse:
    """Keeps a token that the server accepts in the cookie, then goes back where asked."""
    form = await request.post()
    gate.check_csrf(request, form)
    token = form.get("token", "")
    target = local_path(form.get("next", "/"))
    token = token.strip() if isinstance(token, str) else ""
    try:
        if not token:
            raise Unauthenticated("paste an API token (drv_...) into the form")
        await request.app[WEB].gate.sign_in(token)
    except Unauthenticated as e:
        context = {"next": target, "refused": str(e)}
        return await render(request, "signin.html", context, status=401)
    redirect = web.HTTPSeeOther(target)
    gate.set_token_cookie(redirect, request, token)
    raise redirect


@page
async def sign_out(request: web.Request) -> web.StreamResponse:
    """Forgets the token cookie."""
    gate.check_csrf(request, await request.post())
    redirect = web.HTTPSeeOther("/")
    gate.clear_token_cookie(redirect)
    raise redirect
