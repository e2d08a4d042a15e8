"""`drover token create | list | revoke`: API tokens.

Through the API with an admin token, or with `--state-dir` on the server's
machine, acting on its store directly (server/cli/local.py): that is how
the first admin token is made. A new token is printed once, alone on stdout
(`export DROVER_TOKEN=$(drover token create ...)`), and never again: the
server keeps only its digest.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from server.cli import render
from server.cli.client import client_of, quote
from server.cli.local import add_local_options, is_local, state_store
from server.cli.options import Failure, Subparsers, duration_secs

ROLES = ("viewer", "scheduler", "admin")


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds `token` and its subcommands."""
    token = sub.add_parser("token", help="create, list and revoke API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")

    p = token_sub.add_parser("create", parents=[parent], help="create a token (shown once)")
    p.add_argument("--name", required=True, help="the user it stands for (acts as user:NAME)")
    p.add_argument("--role", required=True, choices=ROLES, help="what it may do")
    p.add_argument(
        "--expires-in",
        type=duration_secs,
        default=0,
        metavar="DURATION",
        help="lifetime: seconds, or 90m, 12h, 30d (default: never expires)",
    )
    add_local_options(p, optional=True)
    p.set_defaults(run=_create)

    p = token_sub.add_parser("list", parents=[parent], help="list tokens (never their secrets)")
    add_local_options(p, optional=True)
    p.set_defaults(run=_list)

    p = token_sub.add_parser("revoke", parents=[parent], help="refuse a token from now on")
    p.add_argument("token_id", metavar="TOKEN_ID", help="its ID (or the whole token)")
    add_local_options(p, optional=True)
    p.set_defaults(run=_revoke)


def _local(args: argparse.Namespace, action: str) -> Any:
    """Runs an Auth RPC against the server's Store directly; returns its JSON answer."""
    # Imported here so that client commands start without loading the server.
    from protos.api import auth_pb2
    from server.api import auth_servicer
    from server.api.transcoder import to_json
    from server.auth.tokens import LOCAL, ApiTokenService
    from server.clock import SystemClock
    from server.errors import DroverError

    async def run() -> Any:
        async with state_store(args) as store:
            tokens = ApiTokenService(store, SystemClock())
            if action == "create":
                token, record = await tokens.create(
                    args.name, args.role, created_by=LOCAL, expires_in_secs=args.expires_in
                )
                info = auth_servicer.token_info(record)
                return to_json(auth_pb2.CreatedToken(token=token, info=info))
            if action == "list":
                items = [auth_servicer.token_info(t) for t in await tokens.list_tokens()]
                return to_json(auth_pb2.ListTokensResponse(items=items))
            return to_json(auth_servicer.token_info(await tokens.revoke(args.token_id)))

    try:
        return asyncio.run(run())
    except DroverError as e:
        raise Failure(str(e)) from e


def _create(args: argparse.Namespace) -> int:
    if is_local(args):
        created = _local(args, "create")
    else:
        body = {"name": args.name, "role": args.role, "expires_in_secs": args.expires_in}
        created = client_of(args).post("/tokens", body)
    if args.json:
        render.print_json(created)
        return 0
    info = created.get("info", {})
    print(created["token"])
    expiry = render.when(info.get("expires_ts", "")) or "never"
    render.warn(
        f"token {info.get('token_id')} for user:{info.get('name')} ({info.get('role')}), "
        f"expires: {expiry}. It is shown only this once."
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    return render.listing(
        _local(args, "list") if args.state_dir else client_of(args).get("/tokens"),
        args.json,
        ["id", "name", "role", "created", "by", "expires", "status"],
        lambda t: [
            str(t.get("token_id", "")),
            str(t.get("name", "")),
            str(t.get("role", "")),
            render.age(t.get("created_ts", "")) + " ago",
            str(t.get("created_by", "")),
            render.when(t.get("expires_ts", "")) or "never",
            _status(t),
        ],
    )


def _status(token: dict[str, Any]) -> str:
    if token.get("revoked_ts"):
        return "revoked"
    expires = render.parse_ts(token.get("expires_ts", ""))
    return "expired" if expires is not None and expires <= render.now() else "active"


def _revoke(args: argparse.Namespace) -> int:
    if is_local(args):
        info = _local(args, "revoke")
    else:
        info = client_of(args).post(f"/tokens/{quote(args.token_id)}:revoke")
    if args.json:
        render.print_json(info)
        return 0
    print(f"{info.get('token_id')}: revoked ({render.when(info.get('revoked_ts', ''))})")
    return 0
