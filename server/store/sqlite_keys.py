"""Signing keys of minted tokens in the SQLite store (see server/store/sqlite.py).

One row per key in `signing_keys`, the whole record as JSON next to the
columns the operations select and order on. The functions run inside the
caller's transaction: `add` needs the write lock from its first read, so
the compare-and-set on the newest key holds across processes sharing the
file.
"""

from __future__ import annotations

import sqlite3

from server.model import SigningKey
from server.store import codec


def select(db: sqlite3.Connection, purpose: str) -> list[SigningKey]:
    """The keys of `purpose`, oldest `active_ts` first, ties by key ID."""
    rows = db.execute(
        "SELECT data FROM signing_keys WHERE purpose = ? ORDER BY active_ts, key_id", (purpose,)
    )
    return [codec.loads(SigningKey, data) for (data,) in rows]


def add(db: sqlite3.Connection, key: SigningKey, after: str) -> SigningKey:
    """Stores `key` if the newest key of its purpose is `after`; returns the newest key.

    Must run in a write transaction (BEGIN IMMEDIATE) so no other writer
    adds a key between the check and the insert.
    """
    keys = select(db, key.purpose)
    if keys and (keys[-1].key_id != after or any(k.key_id == key.key_id for k in keys)):
        return keys[-1]
    db.execute(
        "DELETE FROM signing_keys WHERE purpose = ? AND expires_ts < ?",
        (key.purpose, key.created_ts),
    )
    db.execute(
        "INSERT INTO signing_keys (purpose, key_id, active_ts, expires_ts, data)"
        " VALUES (?, ?, ?, ?, ?)",
        (key.purpose, key.key_id, key.active_ts, key.expires_ts, codec.dumps(key)),
    )
    # The new key is the newest only if it activates no earlier than the
    # others; a caller passing an older one gets the true newest back.
    return select(db, key.purpose)[-1]
