"""HMAC-signed bearer tokens with a recognisable prefix: the access and bootstrap tokens.

A token is `<prefix><payload>.<tag>`: the payload is compact JSON in
unpadded base64url, naming the key that signed it (`kid`) and its expiry
(`exp`); the tag is HMAC-SHA256 under that key over a context string, the
prefix and the payload, so a token of one kind can never pass for another
even if two kinds shared a key. The prefix tells a reader (and secret
scanners) what the string is, and tells the API which verifier it belongs
to without parsing it.

`unseal` checks everything but what the token stands for: that is for the
verifier of each kind (a task token also needs its task to be running).
Error messages never include the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from server.auth.keyring import Keyring
from server.clock import Clock
from server.errors import DroverError

# Far above a real token (a few hundred characters); longer ones are refused
# before anything is decoded.
MAX_TOKEN_CHARS = 4096
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWTs and these tokens use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The inverse of b64url; raises ValueError for anything else."""
    if any(c not in _B64URL for c in text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as e:
        raise ValueError("not base64url") from e


def _tag(secret: bytes, context: bytes, prefix: str, payload: str) -> bytes:
    message = context + b"\x00" + prefix.encode("ascii") + payload.encode("ascii")
    return hmac.new(secret, message, hashlib.sha256).digest()


async def seal(keyring: Keyring, prefix: str, context: bytes, claims: dict[str, Any]) -> str:
    """A token carrying `claims` (which must hold `exp`), signed with the current key."""
    key = await keyring.signing_key()
    body = dict(claims, kid=key.key_id)
    payload = b64url(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    return f"{prefix}{payload}.{b64url(_tag(key.material, context, prefix, payload))}"


async def unseal(
    keyring: Keyring,
    prefix: str,
    context: bytes,
    token: str,
    clock: Clock,
    error: type[DroverError],
) -> dict[str, Any] | None:
    """The claims of a valid, unexpired token; None if `token` is not of this kind.

    Raises `error` (with what is wrong, never the token) for a token with
    this prefix that is malformed, signed by an unknown or retired key,
    tampered with, or expired.
    """
    if not token.startswith(prefix):
        return None
    if len(token) > MAX_TOKEN_CHARS:
        raise error(f"the token is longer than {MAX_TOKEN_CHARS} characters")
    payload, dot, tag_text = token[len(prefix) :].partition(".")
    try:
        claims = json.loads(b64url_decode(payload))
        tag = b64url_decode(tag_text)
    except ValueError as e:
        raise error("the token is malformed") from e
    if not dot or not isinstance(claims, dict) or not isinstance(claims.get("kid"), str):
        raise error("the token is malformed")
    key = await keyring.verification_key(claims["kid"])
    if key is None:
        raise error("the token was signed by a key this server does not have (or no longer)")
    if not hmac.compare_digest(_tag(key.material, context, prefix, payload), tag):
        raise error("the token's signature does not match")
    expiry = claims.get("exp")
    if isinstance(expiry, bool) or not isinstance(expiry, int | float):
        raise error("the token has no expiry")
    if clock.now() >= expiry:
        raise error("the token has expired")
    return claims
