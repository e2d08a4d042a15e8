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

from server.cli.local import add_local_options, state_store
from server.cli.options import Failure, Subparsers


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds `session-keys rotate`."""
    keys = sub.add_parser("session-keys", help="the keys that sign bot sessions")
    keys_sub = keys.add_subparsers(dest="session_keys_command", required=True)
    rotate = keys_sub.add_parser(
        "rotate", help="add a key that signs from now on; the older ones keep verifying"
    )
    add_local_options(rotate)
    rotate.set_defaults(run=_rotate)


def _rotate(args: argparse.Namespace) -> int:
    from server.auth import session_keystore
    from server.clock import SystemClock

    async def rotate() -> str:
        clock = SystemClock()
        async with state_store(args) as store:
            # A server that never started on this store has no keys yet: the
            # first come from its keys file if it has one, as when it starts.
            await session_keystore.load_or_create(store, clock, args.state_dir)
            return (await session_keystore.rotate(store, clock)).key_id

    try:
        key_id = asyncio.run(rotate())
    except session_keystore.RotationRace as e:
        raise Failure(str(e)) from e
    print(f"session key {key_id} added; servers sign with it once they re-check the store")
    return 0
