"""The bot's command line: `python3 swarming_bot.zip <subcommand>`.

Subcommands (the stock bot's names, PROTOCOL.md 3.1):
    start_bot     run the bot (the default); start_slave is an alias
    is_fine       import all the code, load the hooks, ping the server: exit 0 or 1
    version       print the bot's version (its content digest)
    attributes    print the bot's dimensions, state and version as JSON
    task_runner   run one task (started by the bot itself)
From a source tree, `--server URL` (or $DROVER_SERVER) names the server.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import List, Optional

from bot import runtime

COMMANDS = ("start_bot", "start_slave", "is_fine", "version", "attributes", "task_runner")
# Every module of the bot, imported by is_fine so a broken archive is caught
# before the bot execs into it.
MODULES = (
    "archive",
    "backoff",
    "cli",
    "context",
    "dims",
    "hooks",
    "local_auth",
    "main",
    "manifest",
    "remote",
    "reporter",
    "results",
    "runtime",
    "singleton",
    "stream",
    "supervisor",
    "task_runner",
    "taskrun",
    "update",
)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", help="server URL (source tree only; archives have theirs)")
    parser = argparse.ArgumentParser(prog="swarming_bot", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name in ("start_bot", "start_slave"):
        p = sub.add_parser(name, parents=[common], help="run the bot")
        # Accepted for compatibility with the stock bot's command lines.
        p.add_argument("--survive", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("--test-mode", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("is_fine", parents=[common], help="check this bot code works here")
    sub.add_parser("version", parents=[common], help="print the bot version")
    sub.add_parser("attributes", parents=[common], help="print dimensions, state, version")
    p = sub.add_parser("task_runner", parents=[common], help="internal: run one task")
    p.add_argument("--in", dest="in_path", required=True)
    p.add_argument("--out", dest="out_path", required=True)
    return parser


def is_fine(rt: runtime.Runtime) -> int:
    """0 when every module imports, the hooks load, and the server answers a ping."""
    from bot.hooks import Hooks
    from bot.remote import Remote

    for name in MODULES:
        importlib.import_module(f"bot.{name}")
    hooks = Hooks(rt.base_hooks)
    if hooks.quarantine:
        print(f"is_fine: {hooks.quarantine}", file=sys.stderr)
        return 1
    if not Remote(rt.server, bot_id="", version=rt.version).ping(budget=30.0):
        print(f"is_fine: {rt.server} does not answer server_ping", file=sys.stderr)
        return 1
    return 0


def attributes(rt: runtime.Runtime) -> int:
    """Prints what the bot would report at its handshake."""
    from bot.context import BotContext

    ctx = BotContext(rt)
    dimensions, state = ctx.collect()
    print(
        json.dumps(
            {"dimensions": dimensions, "state": state, "version": rt.version},
            indent=2,
            sort_keys=True,
        )
    )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Runs one subcommand; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "start_bot")
    args = _parser().parse_args(args_list)
    try:
        rt = runtime.load(args.server)
    except runtime.ConfigError as e:
        print(f"drover_bot: {e}", file=sys.stderr)
        return 2
    if args.command == "version":
        print(rt.version)
        return 0
    if args.command == "is_fine":
        return is_fine(rt)
    if args.command == "attributes":
        return attributes(rt)
    if args.command == "task_runner":
        from bot import task_runner

        return task_runner.main(args.in_path, args.out_path)
    from bot import main as bot_main

    return bot_main.run(rt)
