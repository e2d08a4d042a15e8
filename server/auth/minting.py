"""The token minters of one server, each with its own rotating keys in the Store."""

from __future__ import annotations

import dataclasses

from server.auth import access_tokens, bootstrap_tokens, id_tokens
from server.auth.access_tokens import AccessTokens
from server.auth.bootstrap_tokens import BootstrapTokens
from server.auth.id_tokens import IdTokens
from server.auth.keyring import Keyring
from server.clock import Clock
from server.store.base import Store


@dataclasses.dataclass(frozen=True)
class Minters:
    """Access tokens, ID tokens and bootstrap tokens."""

    access: AccessTokens
    id_tokens: IdTokens
    bootstrap: BootstrapTokens


def minters(store: Store, clock: Clock, issuer: str) -> Minters:
    """The minters of a server whose URL (the ID tokens' `iss`) is `issuer`."""
    return Minters(
        access=AccessTokens(Keyring(store, access_tokens.POLICY, clock), clock),
        id_tokens=IdTokens(Keyring(store, id_tokens.POLICY, clock), clock, issuer),
        bootstrap=bootstrap_minter(store, clock),
    )


def bootstrap_minter(store: Store, clock: Clock) -> BootstrapTokens:
    """The bootstrap tokens alone (what `drover bootstrap-token` needs)."""
    return BootstrapTokens(Keyring(store, bootstrap_tokens.POLICY, clock), clock)
