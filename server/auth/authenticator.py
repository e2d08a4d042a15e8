"""Who a client API caller is: the bearer token, tried against a list of verifiers.

Every client API call, over HTTP/JSON or gRPC, carries at most one bearer
token (`Authorization: Bearer <token>` as an HTTP header or as gRPC
metadata). The Authenticator hands it to each verifier in turn; a verifier
recognizes its own kind of token by its form (API tokens start with
"drv_"), and answers a Principal, None ("not mine"), or raises one of the
errors below when the token is its kind but no good. A call without a token
is anonymous, with the role settings.cfg gives anonymous callers.

A new kind of token plugs in as one more Verifier in the list app.py builds
(issue 6's task access tokens): nothing else changes. Tokens never appear in
logs or error messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from server.auth.principal import Principal
from server.errors import Unauthenticated


class InvalidToken(Unauthenticated):
    """The bearer token is not valid."""


class ExpiredToken(Unauthenticated):
    """The bearer token has expired."""


class RevokedToken(Unauthenticated):
    """The bearer token was revoked."""


class Verifier(Protocol):
    """Checks bearer tokens of one kind."""

    async def verify(self, token: str) -> Principal | None:
        """The principal the token stands for; None when the token is not of this kind.

        Raises InvalidToken, ExpiredToken or RevokedToken (or another
        Unauthenticated) for a token of this kind that must be refused,
        saying why without repeating the token.
        """
        ...


def authorization_header(headers: Mapping[str, str]) -> str:
    """The Authorization value of HTTP headers (any case) or gRPC metadata (lower case)."""
    value = headers.get("Authorization") or headers.get("authorization")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return value.strip()


class Authenticator:
    """Turns a call's headers into its Principal; see the module docstring."""

    def __init__(self, verifiers: Sequence[Verifier], anonymous_role: Callable[[], str]) -> None:
        """`anonymous_role` is read on every call, so a config reload takes effect at once."""
        self._verifiers = list(verifiers)
        self._anonymous_role = anonymous_role

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller's principal. Raises Unauthenticated for a token that is refused."""
        header = authorization_header(headers)
        if not header:
            return Principal.anonymous(self._anonymous_role())
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise InvalidToken("the Authorization header must be 'Bearer <token>'")
        for verifier in self._verifiers:
            principal = await verifier.verify(token)
            if principal is not None:
                return principal
        raise InvalidToken("it is of no kind this server knows (API tokens start with drv_)")
