# mypy: disallow-untyped-calls=False
# (google-cloud-datastore leaves its functions unannotated; see datastore_client.)
"""API tokens in the Datastore backend.

One ApiToken entity per token, named by its public ID, the record as JSON
in its unindexed `data` property. Adding one is a transaction that refuses
an ID already taken; revoking is a transaction too, so two replicas
revoking at once keep the first time. Listing is a kind query without
filters or order (a server has a handful of tokens, sorted here), so it
needs no composite index. Functions here block: DatastoreStore runs them in
its worker threads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from server import errors
from server.model import ApiToken
from server.store import codec
from server.store.datastore_client import key, load, make_entity, query, run_transaction

API_TOKEN = "ApiToken"


def _entity(client: Any, token: ApiToken) -> Any:
    return make_entity(client, API_TOKEN, token.token_id, {}, {"data": codec.dumps(token)})


def add(client: Any, token: ApiToken) -> None:
    """Stores a new token; raises Conflict when its ID is taken."""
    token_key = key(client, API_TOKEN, token.token_id)

    def work(tx: Any) -> None:
        if client.get(token_key, transaction=tx) is not None:
            raise errors.Conflict(f"API token {token.token_id} already exists")
        tx.put(_entity(client, token))

    run_transaction(client, work)


def get(client: Any, token_id: str) -> ApiToken | None:
    """The token with this ID, or None."""
    entity = client.get(key(client, API_TOKEN, token_id))
    return None if entity is None else load(ApiToken, entity)


def list_all(client: Any) -> list[ApiToken]:
    """Every token, oldest first, ties by ID."""
    tokens = [load(ApiToken, e) for e in query(client, API_TOKEN).fetch()]
    return sorted(tokens, key=lambda t: (t.created_ts, t.token_id))


def revoke(client: Any, token_id: str, now: float) -> ApiToken | None:
    """Sets `revoked_ts` unless set; returns the stored token, None if unknown."""
    token_key = key(client, API_TOKEN, token_id)

    def work(tx: Any) -> ApiToken | None:
        entity = client.get(token_key, transaction=tx)
        if entity is None:
            return None
        token = load(ApiToken, entity)
        if token.revoked_ts is not None:
            return token
        revoked = dataclasses.replace(token, revoked_ts=now)
        tx.put(_entity(client, revoked))
        return revoked

    return run_transaction(client, work)
