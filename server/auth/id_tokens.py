"""OpenID Connect ID tokens: what `id_token` mints, and how others verify them.

An ID token is a JWT signed RS256 with the `cryptography` package (no JWT
library): `iss` is the server's URL, `aud` the audience the task asked for,
`sub` its service account, with `iat`, `exp`, a unique `jti`, and Drover's
own claims `task_id`, `run_id`, `bot_id` and `pool` (system tokens carry no
task). Its header names the signing key (`kid`). Anyone can check one
against the keys at `<iss>/.well-known/jwks.json`, found through
`<iss>/.well-known/openid-configuration`; the keys rotate as KeyPolicy
says and every key stays listed until the last token it signed expired.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from server.auth.keyring import KeyPolicy, Keyring
from server.auth.signed_tokens import b64url
from server.clock import Clock
from server.model import SigningKey

PURPOSE = "id_token"
ALGORITHM = "RS256"
JWKS_PATH = "/.well-known/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"
LIFETIME_SECS = 15 * 60
POLICY = KeyPolicy(
    purpose=PURPOSE,
    algorithm=ALGORITHM,
    rotation_secs=24 * 3600,
    max_token_secs=LIFETIME_SECS,
    # Longer than any JWKS cache should last (our answer allows an hour), so
    # a verifier knows a key before the first token signed with it.
    publish_ahead_secs=6 * 3600,
)
# Drover's claims beyond the registered ones, in every token that has them.
CLAIMS = ("task_id", "run_id", "bot_id", "pool")
# Parsed private keys kept in memory; a handful are in use at any time.
_MAX_LOADED = 8


class IdTokens:
    """Mints ID tokens and publishes the keys that verify them."""

    def __init__(self, keyring: Keyring, clock: Clock, issuer: str) -> None:
        self._keyring = keyring
        self._clock = clock
        self.issuer = issuer.rstrip("/")
        self._private: dict[str, rsa.RSAPrivateKey] = {}

    async def mint(
        self, *, subject: str, audience: str, extra: dict[str, str]
    ) -> tuple[str, float]:
        """A signed ID token and its expiry; `extra` holds Drover's claims (CLAIMS)."""
        key = await self._keyring.signing_key()
        now = int(self._clock.now())
        expiry = now + LIFETIME_SECS
        header = {"alg": ALGORITHM, "kid": key.key_id, "typ": "JWT"}
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": expiry,
            "jti": secrets.token_hex(16),
        }
        payload.update({k: v for k, v in extra.items() if k in CLAIMS and v})
        signing_input = f"{_segment(header)}.{_segment(payload)}".encode("ascii")
        signature = self._private_key(key).sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode('ascii')}.{b64url(signature)}", float(expiry)

    async def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set: every key that verifies tokens now or will sign soon."""
        keys = await self._keyring.published()
        return {"keys": [public_jwk(self._private_key(k), k.key_id) for k in keys]}

    def discovery(self) -> dict[str, Any]:
        """The OpenID provider metadata (OpenID Connect Discovery 1.0, section 3)."""
        return {
            "issuer": self.issuer,
            "jwks_uri": self.issuer + JWKS_PATH,
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "claims_supported": ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", *CLAIMS],
        }

    def _private_key(self, key: SigningKey) -> rsa.RSAPrivateKey:
        loaded = self._private.get(key.key_id)
        if loaded is None:
            parsed = serialization.load_pem_private_key(key.material, password=None)
            if not isinstance(parsed, rsa.RSAPrivateKey):
                raise TypeError(f"key {key.key_id} is not an RSA key")
            if len(self._private) >= _MAX_LOADED:
                # A long-running server sees a new key a day: forget the oldest.
                del self._private[next(iter(self._private))]
            self._private[key.key_id] = loaded = parsed
        return loaded


def public_jwk(private: rsa.RSAPrivateKey, key_id: str) -> dict[str, str]:
    """The public half of an RSA key as a JWK (RFC 7517, 7518 section 6.3)."""
    numbers = private.public_key().public_numbers()
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": ALGORITHM,
        "kid": key_id,
        "n": b64url(_unsigned(numbers.n)),
        "e": b64url(_unsigned(numbers.e)),
    }


def _unsigned(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _segment(part: dict[str, Any]) -> str:
    return b64url(json.dumps(part, sort_keys=True, separators=(",", ":")).encode("utf-8"))
