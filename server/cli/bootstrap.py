"""`drover bootstrap-token`: mint a short-lived token that lets a new machine join the fleet.

It runs on the server's machine, against the server's own Store (the
signing keys live there; the store flags are those of `drover serve`), so
it needs no API token and works whether the server runs or not: a running
server accepts the token at once. It prints the token and the one command that starts a bot with it:

    curl -fsS 'http://127.0.0.1:8080/bootstrap?tok=drb_...' | python3 - drover-bot
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import shlex

from server.auth import bootstrap_tokens
from server.cli import render
from server.cli.local import add_local_options, state_store
from server.cli.options import Failure, Subparsers


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds `bootstrap-token`."""
    p = sub.add_parser(
        "bootstrap-token",
        parents=[parent],
        help="mint a token that lets a new machine download the bot and join",
        description=(
            "Mints a bootstrap token in the server's state directory and prints the"
            " command a new machine runs to join (--server is the URL it uses)."
        ),
    )
    add_local_options(p)
    p.add_argument(
        "--lifetime",
        type=int,
        default=bootstrap_tokens.DEFAULT_LIFETIME_SECS,
        metavar="SECS",
        help=(
            f"how long the token works (default {bootstrap_tokens.DEFAULT_LIFETIME_SECS},"
            f" at most {bootstrap_tokens.MAX_LIFETIME_SECS})"
        ),
    )
    p.set_defaults(run=_bootstrap_token)


def join_command(server: str, token: str) -> str:
    """The shell command that fetches the bootstrap script and starts a bot in ./drover-bot."""
    url = f"{server.rstrip('/')}/bootstrap?tok={token}"
    return f"curl -fsS {shlex.quote(url)} | python3 - drover-bot"


def _bootstrap_token(args: argparse.Namespace) -> int:
    # Imported here so that client commands start without loading the server.
    from server.errors import InvalidRequest

    try:
        token, expiry = asyncio.run(_mint(args))
    except InvalidRequest as e:
        raise Failure(str(e)) from e
    expires = datetime.datetime.fromtimestamp(expiry, datetime.UTC).isoformat(timespec="seconds")
    if args.json:
        render.print_json(
            {"token": token, "expiry": expires, "command": join_command(args.server, token)}
        )
        return 0
    render.fields([("token", token), ("expires", expires)])
    print(f"\nOn the new machine (Python 3.9+):\n  {join_command(args.server, token)}")
    return 0


async def _mint(args: argparse.Namespace) -> tuple[str, float]:
    from server.auth import minting
    from server.clock import SystemClock

    async with state_store(args) as store:
        return await minting.bootstrap_minter(store, SystemClock()).mint(args.lifetime)
