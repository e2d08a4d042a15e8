# mypy: disallow-untyped-calls=False
# (google-cloud-datastore leaves its functions unannotated; see datastore_client.)
"""Signing keys of minted tokens in the Datastore backend.

All keys of one purpose live in one SigningKeyring entity named after the
purpose, as a JSON list in its unindexed `keys` property: a purpose has a
handful of keys at most (the signing one, the next one, and the retired
ones whose tokens have not expired yet). So adding a key is a transaction
on that single entity, which makes the compare-and-set on the newest key
exact across replicas, and reading is one lookup: no query, no index.
Functions here block: DatastoreStore runs them in its worker threads.
"""

from __future__ import annotations

import json
from typing import Any

from server.model import SigningKey
from server.store import codec
from server.store.datastore_client import key, make_entity, run_transaction

SIGNING_KEYRING = "SigningKeyring"


def _decode(entity: Any) -> list[SigningKey]:
    if entity is None:
        return []
    return [codec.from_dict(SigningKey, item) for item in json.loads(entity["keys"])]


def _ordered(keys: list[SigningKey]) -> list[SigningKey]:
    return sorted(keys, key=lambda k: (k.active_ts, k.key_id))


def list_keys(client: Any, purpose: str) -> list[SigningKey]:
    """The keys of `purpose`, oldest `active_ts` first, ties by key ID."""
    return _ordered(_decode(client.get(key(client, SIGNING_KEYRING, purpose))))


def add_key(client: Any, new: SigningKey, after: str) -> SigningKey:
    """Stores `new` if the newest key of its purpose is `after`; returns the newest key."""
    ring_key = key(client, SIGNING_KEYRING, new.purpose)

    def work(tx: Any) -> SigningKey:
        keys = _ordered(_decode(client.get(ring_key, transaction=tx)))
        if keys and (keys[-1].key_id != after or any(k.key_id == new.key_id for k in keys)):
            return keys[-1]
        kept = _ordered([k for k in keys if k.expires_ts >= new.created_ts] + [new])
        text = json.dumps([codec.to_dict(k) for k in kept], separators=(",", ":"))
        tx.put(make_entity(client, SIGNING_KEYRING, new.purpose, {}, {"keys": text}))
        return kept[-1]

    return run_transaction(client, work)
