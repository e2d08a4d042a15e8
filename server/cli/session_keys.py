"""`drover session-keys rotate`: a new key for bot sessions, in the Store itself.

The keys live in the Store (server/auth/session_keystore.py), so this
command opens it directly, with the same store flags as `drover serve`,
while the servers keep running: each one verifies the new key and signs
with it once it re-checks the Store (`serve --recheck-secs`). Tokens
signed with the older keys stay valid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from server.cli.local import state_store
from server.cli.options import Failure, Subparsers
from server.cli.serve import add_store_options, store_options

if TYPE_CHECKING:
    from server.clock import Clock
    from server.store.backends import StoreOptions
    from server.store.base import Store


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds `session-keys rotate`."""
    keys = sub.add_parser("session-keys", help="the keys that sign bot sessions")
    keys_sub = keys.add_subparsers(dest="session_keys_command", required=True)
    rotate = keys_sub.add_parser(
        "rotate", help="add a key that signs from now on; the older ones keep verifying"
    )
    rotate.add_argument("--state-dir", type=pathlib.Path, default=pathlib.Path("state"))
    add_store_options(rotate)
    rotate.set_defaults(run=_rotate)


def _rotate(args: argparse.Namespace) -> int:
    from server.auth import session_keystore
    from server.clock import SystemClock
    from server.store.backends import StoreUnavailable

    options = store_options(args)

    async def rotate() -> str:
        clock = SystemClock()
        async with _opened(options, args.state_dir, clock) as store:
            # A server that never started on this store has no keys yet: the
            # first come from its keys file if it has one, as when it starts.
            await session_keystore.load_or_create(store, clock, args.state_dir)
            return (await session_keystore.rotate(store, clock)).key_id

    try:
        key_id = asyncio.run(rotate())
    except (StoreUnavailable, session_keystore.RotationRace) as e:
        raise Failure(str(e)) from e
    print(f"session key {key_id} added; servers sign with it once they re-check the store")
    return 0


@contextlib.asynccontextmanager
async def _opened(
    options: StoreOptions, state_dir: pathlib.Path, clock: Clock
) -> AsyncIterator[Store]:
    """The store `options` name, closed on exit; SQLite's only if its file exists."""
    from server.store.backends import SQLITE, open_store

    if options.backend == SQLITE:
        async with state_store(state_dir) as sqlite:
            yield sqlite
        return
    store = await open_store(options, state_dir, clock)
    try:
        yield store
    finally:
        await store.close()
