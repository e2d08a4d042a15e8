"""Rotating signing keys for minted tokens, kept in the Store so replicas agree.

Each kind of token (ID tokens, task access tokens, bootstrap tokens) has its
own purpose and `KeyPolicy`. Keys take turns: one signs for `rotation_secs`;
the next is created `publish_ahead_secs` before its turn, so verifiers that
cache the JWKS (our JWKS answer allows an hour) already know it when it
starts signing; a retired key stays published and verifies for
`max_token_secs` more, the longest a token it signed can live. All of it
follows the injected clock, so tests rotate keys by advancing a FakeClock.

Rotation is lazy and race-free: whoever needs to sign and sees a turn
ending creates the next key and offers it to the Store with compare-and-set
on the newest key (`Store.add_signing_key`); when two replicas race, one
key wins and both use it. Keys are read from the Store at most every
CACHE_SECS, and again at once when a token names a key this replica has not
seen yet (another replica created it).

The key material sits in the Store like the rest of the server's state,
beside the session keys: whoever can read the database can mint tokens and
forge sessions. With SQLite the server keeps its state directory readable
by its owner only (server/app.py make_private_dir).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server.clock import Clock
from server.model import SigningKey
from server.store.base import Store

log = logging.getLogger("drover.auth")

# How long a replica trusts its copy of the keys before reading the Store
# again; a token signed by a key it has not seen makes it read at once.
CACHE_SECS = 60.0
# A token naming an unknown key reloads the keys at most this often, so a
# flood of forged key IDs costs one Store read per second, not one per call.
MISS_RELOAD_SECS = 1.0
# 2048-bit RSA: what RS256 verifiers everywhere accept (NIST-approved to 2030).
RSA_BITS = 2048
HMAC_KEY_BYTES = 32
ALGORITHMS = ("RS256", "HS256")


@dataclasses.dataclass(frozen=True)
class KeyPolicy:
    """How the keys of one purpose rotate."""

    purpose: str
    algorithm: str
    # How long one key signs.
    rotation_secs: float
    # The longest life of a token signed by these keys.
    max_token_secs: float
    # How long before its turn the next key is created and published.
    publish_ahead_secs: float

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; known: {ALGORITHMS}")
        if not 0 <= self.publish_ahead_secs < self.rotation_secs:
            raise ValueError("publish_ahead_secs must be in [0, rotation_secs)")


def new_material(algorithm: str) -> bytes:
    """Fresh secret material: a PKCS#8 PEM RSA private key, or random HMAC bytes."""
    if algorithm == "HS256":
        return secrets.token_bytes(HMAC_KEY_BYTES)
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Keyring:
    """The keys of one purpose: the one to sign with now, and the ones that verify."""

    def __init__(self, store: Store, policy: KeyPolicy, clock: Clock) -> None:
        self._store = store
        self.policy = policy
        self._clock = clock
        self._keys: list[SigningKey] = []
        self._loaded_ts: float | None = None
        self._rotating = asyncio.Lock()

    async def signing_key(self) -> SigningKey:
        """The key that signs now, creating the current or next one when it is due."""
        now = self._clock.now()
        keys = await self._cached(now)
        current = _signing(keys, now)
        newest = keys[-1] if keys else None
        if (
            current is not None
            and newest is not None
            and (
                newest.active_ts > current.active_ts
                or current.retire_ts - now > self.policy.publish_ahead_secs
            )
        ):
            return current
        async with self._rotating:
            # Another call of this replica may have rotated while we waited.
            keys = await self._reload(self._clock.now())
            now = self._clock.now()
            current = _signing(keys, now)
            newest = keys[-1] if keys else None
            if current is None:
                # No key signs now (first start, or the server was down
                # through a whole turn): one starts at once.
                await self._add(now, now, newest)
            elif newest is current and current.retire_ts - now <= self.policy.publish_ahead_secs:
                await self._add(now, current.retire_ts, newest)
            keys = await self._reload(now)
        signing = _signing(keys, now)
        assert signing is not None, "a key that signs now was just stored"
        return signing

    async def verification_key(self, key_id: str) -> SigningKey | None:
        """The key named `key_id` if it still verifies tokens, else None."""
        now = self._clock.now()
        keys = await self._cached(now)
        found = _find(keys, key_id)
        loaded = self._loaded_ts if self._loaded_ts is not None else now
        if found is None and now - loaded >= MISS_RELOAD_SECS:
            found = _find(await self._reload(now), key_id)
        if found is None or found.expires_ts < now:
            return None
        return found

    async def published(self) -> list[SigningKey]:
        """Every key that verifies tokens now or will sign soon, read fresh from the Store."""
        now = self._clock.now()
        return [k for k in await self._reload(now) if k.expires_ts >= now]

    async def _add(self, now: float, active_ts: float, newest: SigningKey | None) -> None:
        policy = self.policy
        material = await asyncio.to_thread(new_material, policy.algorithm)
        retire_ts = active_ts + policy.rotation_secs
        key = SigningKey(
            purpose=policy.purpose,
            key_id=secrets.token_hex(8),
            algorithm=policy.algorithm,
            material=material,
            created_ts=now,
            active_ts=active_ts,
            retire_ts=retire_ts,
            expires_ts=retire_ts + policy.max_token_secs,
        )
        stored = await self._store.add_signing_key(key, after=newest.key_id if newest else "")
        if stored.key_id == key.key_id:
            log.info(
                "new %s signing key %s, signs from %.0f", policy.purpose, key.key_id, active_ts
            )

    async def _cached(self, now: float) -> list[SigningKey]:
        if self._loaded_ts is None or now - self._loaded_ts >= CACHE_SECS or now < self._loaded_ts:
            return await self._reload(now)
        return self._keys

    async def _reload(self, now: float) -> list[SigningKey]:
        self._keys = await self._store.list_signing_keys(self.policy.purpose)
        self._loaded_ts = now
        return self._keys


def _signing(keys: list[SigningKey], now: float) -> SigningKey | None:
    """The newest key whose turn includes `now`."""
    for key in reversed(keys):
        if key.active_ts <= now < key.retire_ts:
            return key
    return None


def _find(keys: list[SigningKey], key_id: str) -> SigningKey | None:
    return next((k for k in keys if k.key_id == key_id), None)
