"""The bot session keys in the Store, so that every replica signs and verifies alike.

A session minted by one replica must be accepted by every other (DESIGN.md
8), so the HMAC keys of server/auth/session.py live in the Store, as the
signing keys of the purpose "bot_session" (the records and compare-and-set
of Store.add_signing_key that server/auth/keyring.py uses for minted
tokens). Their order is the keys' order: the newest signs.

- First start: `load_or_create` offers one key (or the keys of an older
  server's state_dir/session_keys.json) with compare-and-set on "no key
  yet", so replicas starting together all end up with the one stored.
- Rotation: `rotate` (`drover session-keys rotate`) adds a key with
  compare-and-set on the newest one; the old keys keep verifying.
- Every replica reads the keys again with `reload` at a short interval
  (server/scheduler/replicas.py), so it verifies, then signs with, a key
  another replica added. Until it has, a token signed with the new key
  gets `bot_restart` there, which the bot recovers from by handshaking.

Session keys have no lifetime of their own: unlike minted tokens' keys
they never retire by date, and they are kept until an operator removes
them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from server.auth.session import SessionKey, SessionKeys
from server.clock import Clock
from server.model import SigningKey
from server.store.base import Store

log = logging.getLogger("drover.auth")

PURPOSE = "bot_session"
ALGORITHM = "HS256"
# "Never" for retire_ts and expires_ts: finite, so every backend stores and
# orders it like any other time (about 31 million years from now).
NEVER_TS = 1e15
# Rotations given up after this many lost races: someone keeps rotating.
ROTATE_ATTEMPTS = 5


class RotationRace(RuntimeError):
    """Other writers kept adding session keys; nothing was rotated."""


async def read(store: Store) -> SessionKeys | None:
    """The stored session keys, oldest first, or None when none is stored yet."""
    stored = await store.list_signing_keys(PURPOSE)
    if not stored:
        return None
    return SessionKeys(SessionKey(k.key_id, k.material) for k in stored)


async def load_or_create(store: Store, clock: Clock, state_dir: Path | None = None) -> SessionKeys:
    """The stored session keys, storing the first ones if there are none.

    The first ones are the keys of `state_dir/session_keys.json` if an
    older server left that file (so its bots stay logged in), else one new
    key. When replicas start together, every one of them returns the keys
    that were stored first. Raises BadKeysFile for an unusable file.
    """
    found = await read(store)
    if found is not None:
        return found
    seed = SessionKeys.read_file(state_dir) if state_dir is not None else None
    source = f"from {state_dir}" if seed is not None else "new"
    seed = seed or SessionKeys.generate()
    now = clock.now()
    after = ""
    for index, key in enumerate(seed.keys):
        # Oldest first, each activating later than the one before, so that
        # the stored order is the file's and the compare-and-set chains up.
        active_ts = now - (len(seed.keys) - 1 - index)
        stored = await store.add_signing_key(_record(key, active_ts), after=after)
        if stored.key_id != key.key_id:
            break  # Another replica stored its keys first: use those.
        after = key.key_id
    keys = await read(store)
    assert keys is not None, "a session key was just stored"
    if keys.signing.key_id == seed.signing.key_id:
        log.info("stored %s session keys %s", source, ", ".join(keys.key_ids))
    return keys


async def reload(store: Store, keys: SessionKeys) -> bool:
    """Makes `keys` the stored keys again; True when they had changed (a rotation)."""
    stored = await read(store)
    if stored is None or not keys.adopt(stored):
        return False
    log.info("session keys reloaded: %s sign", keys.signing.key_id)
    return True


async def rotate(store: Store, clock: Clock) -> SessionKey:
    """Adds a new session key that signs from now on; the older ones keep verifying.

    Compare-and-set on the newest key: a rotation that races another one is
    tried again on top of it. Raises RotationRace when it keeps losing.
    """
    for _ in range(ROTATE_ATTEMPTS):
        stored = await store.list_signing_keys(PURPOSE)
        newest = stored[-1] if stored else None
        key = SessionKey.generate(k.key_id for k in stored)
        # Later than the newest even if this machine's clock is behind.
        active_ts = max(clock.now(), newest.active_ts + 1) if newest else clock.now()
        won = await store.add_signing_key(
            _record(key, active_ts), after=newest.key_id if newest else ""
        )
        if won.key_id == key.key_id:
            log.info("session key %s added; it signs from now on", key.key_id)
            return key
    raise RotationRace(f"gave up after {ROTATE_ATTEMPTS} tries")


def _record(key: SessionKey, active_ts: float) -> SigningKey:
    """The Store record of a session key."""
    return SigningKey(
        purpose=PURPOSE,
        key_id=key.key_id,
        algorithm=ALGORITHM,
        material=key.secret,
        created_ts=active_ts,
        active_ts=active_ts,
        retire_ts=NEVER_TS,
        expires_ts=NEVER_TS,
    )
