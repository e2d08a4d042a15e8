"""Who looks at a page, and whether they may: the client API's rules, for a browser.

A page shows what some client API calls would answer, so it needs what
those calls need (server/auth/access.py RULES): the gate authorizes the
caller for each of them, through the same Access object the API uses. The
caller's API token comes from the Authorization header, as for the API, or
else from the cookie the sign-in form sets (HttpOnly, SameSite=Strict,
Secure over https): a browser cannot send a header on a link. Without
either, the caller is anonymous with settings.cfg's `anonymous_role`.

Forms that change something (sign-in, sign-out, the action buttons) carry
a per-browser CSRF token that must equal the one in the CSRF cookie
(double submit): another site can make a browser send a form, but neither
read nor set that cookie. SameSite=Strict already keeps the token cookie
off cross-site requests; the CSRF token also covers sign-in, which has no
token cookie yet, and browsers that ignore SameSite.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from protos.api import tasks_pb2
from server.auth.access import Access
from server.auth.authenticator import Authenticator, authorization_header
from server.auth.principal import Principal
from server.errors import PermissionDenied, Unauthenticated

TOKEN_COOKIE = "drover_token"
CSRF_COOKIE = "drover_csrf"
# The form field holding the CSRF token.
CSRF_FIELD = "csrf"
# Where the CSRF token of this request's response is kept until the page sets it.
_NEW_CSRF = web.RequestKey("drover_new_csrf", str)


class CsrfMismatch(PermissionDenied):
    """The form's CSRF token does not match this browser's; reload the page and try again."""


def credentials(request: web.Request) -> Mapping[str, str]:
    """The request's headers, with the cookie's token as the bearer token if it sent none.

    An Authorization header wins over the cookie, so a script or a proxy
    that sends one is judged by it.
    """
    token = request.cookies.get(TOKEN_COOKIE, "")
    if authorization_header(request.headers) or not token:
        return request.headers
    headers = CIMultiDict(request.headers)
    headers["Authorization"] = f"Bearer {token}"
    return CIMultiDictProxy(headers)


def has_token_cookie(request: web.Request) -> bool:
    """True when the browser holds a sign-in cookie (it may still be refused)."""
    return bool(request.cookies.get(TOKEN_COOKIE))


class Gate:
    """Authorizes page views and sign-ins with the client API's Access rules."""

    def __init__(self, access: Access, authenticator: Authenticator) -> None:
        self._access = access
        self._authenticator = authenticator

    async def check(self, request: web.Request, *rpcs: str, task_id: str = "") -> Principal:
        """The caller, once it may make each of `rpcs`; raises Unauthenticated or
        PermissionDenied saying what is missing.

        The read rules look at a request only for its `task_id` (a task's
        own token may read that task), so one TaskIdRequest stands for all.
        """
        message = tasks_pb2.TaskIdRequest(task_id=task_id)
        return await self._access.authorize_all(rpcs, message, credentials(request))

    async def whoami(self, request: web.Request) -> Principal | None:
        """The caller, or None when its token is refused (the page header shows who is in)."""
        try:
            return await self._authenticator.authenticate(credentials(request))
        except Unauthenticated:
            return None

    async def sign_in(self, token: str) -> Principal:
        """The principal of `token`; raises Unauthenticated when it is refused."""
        return await self._authenticator.authenticate({"Authorization": f"Bearer {token}"})


def set_token_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    """Keeps `token` in the browser until it closes: script cannot read it, other sites
    cannot send it."""
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def clear_token_cookie(response: web.StreamResponse) -> None:
    """Drops the sign-in cookie."""
    response.del_cookie(TOKEN_COOKIE, path="/")


def csrf_token(request: web.Request) -> str:
    """The CSRF token forms of this page carry: the browser's, or a new one the page sets."""
    token = request.cookies.get(CSRF_COOKIE, "") or request.get(_NEW_CSRF, "")
    if not token:
        token = secrets.token_urlsafe(32)
        request[_NEW_CSRF] = token
    return token


def set_csrf_cookie(response: web.StreamResponse, request: web.Request) -> None:
    """Sets the CSRF cookie when this request made a new token."""
    token = request.get(_NEW_CSRF)
    if token:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )


def check_csrf(request: web.Request, form: Mapping[str, object]) -> None:
    """Raises CsrfMismatch unless the form's CSRF token is the browser's."""
    expected = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise CsrfMismatch()
