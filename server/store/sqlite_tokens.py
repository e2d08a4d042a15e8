"""API tokens in the SQLite store (see server/store/sqlite.py).

One row per token in `api_tokens`, keyed by its public ID, the whole record
as JSON. The functions run inside the caller's transaction; `revoke` reads
and writes under the write lock, so two revocations keep the first time.
"""

from __future__ import annotations

import dataclasses
import sqlite3

from server import errors
from server.model import ApiToken
from server.store import codec


def insert(db: sqlite3.Connection, token: ApiToken) -> None:
    """Stores a new token; raises Conflict when its ID is taken."""
    try:
        db.execute(
            "INSERT INTO api_tokens (token_id, created_ts, data) VALUES (?, ?, ?)",
            (token.token_id, token.created_ts, codec.dumps(token)),
        )
    except sqlite3.IntegrityError as e:
        raise errors.Conflict(f"API token {token.token_id} already exists") from e


def get(db: sqlite3.Connection, token_id: str) -> ApiToken | None:
    """The token with this ID, or None."""
    row = db.execute("SELECT data FROM api_tokens WHERE token_id = ?", (token_id,)).fetchone()
    return None if row is None else codec.loads(ApiToken, row[0])


def select_all(db: sqlite3.Connection) -> list[ApiToken]:
    """Every token, oldest first, ties by ID."""
    rows = db.execute("SELECT data FROM api_tokens ORDER BY created_ts, token_id")
    return [codec.loads(ApiToken, data) for (data,) in rows]


def revoke(db: sqlite3.Connection, token_id: str, now: float) -> ApiToken | None:
    """Sets `revoked_ts` unless set; must run in a write transaction."""
    token = get(db, token_id)
    if token is None or token.revoked_ts is not None:
        return token
    revoked = dataclasses.replace(token, revoked_ts=now)
    db.execute(
        "UPDATE api_tokens SET data = ? WHERE token_id = ?", (codec.dumps(revoked), token_id)
    )
    return revoked
