"""Bot commands: `bots`, `bot`, and the admin controls `terminate`, `quarantine`,
`unquarantine` and `maintenance`."""

from __future__ import annotations

import argparse
from typing import Any

from server.cli import render
from server.cli.client import client_of, quote
from server.cli.options import Subparsers, add_dimension_option, add_page_options

# Dimensions worth a column in `drover bots`; the rest are in `drover bot ID`.
LISTED_DIMENSIONS = ("pool", "os")


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds the bot commands."""
    p = sub.add_parser("bots", parents=[parent], help="list bots")
    add_dimension_option(p, "only bots with this dimension (repeatable)")
    dead = p.add_mutually_exclusive_group()
    dead.add_argument("--dead", dest="is_dead", action="store_const", const="TRUE")
    dead.add_argument("--alive", dest="is_dead", action="store_const", const="FALSE")
    busy = p.add_mutually_exclusive_group()
    busy.add_argument("--busy", dest="is_busy", action="store_const", const="TRUE")
    busy.add_argument("--idle", dest="is_busy", action="store_const", const="FALSE")
    p.add_argument("--quarantined", action="store_const", const="TRUE")
    add_page_options(p)
    p.set_defaults(run=_list)

    p = sub.add_parser("bot", parents=[parent], help="one bot's details and events")
    p.add_argument("bot_id", metavar="BOT_ID")
    p.add_argument("--events", action="store_true", help="also list its latest events")
    p.set_defaults(run=_show)

    p = sub.add_parser("terminate", parents=[parent], help="ask a bot to exit once idle")
    p.add_argument("bot_id", metavar="BOT_ID")
    p.set_defaults(run=_terminate)

    p = sub.add_parser("quarantine", parents=[parent], help="give a bot no more tasks")
    p.add_argument("bot_id", metavar="BOT_ID")
    p.add_argument("--message", default="", help="why (shown on the bot)")
    p.set_defaults(run=_admin, verb="quarantine")

    p = sub.add_parser("unquarantine", parents=[parent], help="end an admin quarantine")
    p.add_argument("bot_id", metavar="BOT_ID")
    p.set_defaults(run=_admin, verb="unquarantine", message=None)

    p = sub.add_parser(
        "maintenance", parents=[parent], help="put a bot in maintenance (empty MESSAGE ends it)"
    )
    p.add_argument("bot_id", metavar="BOT_ID")
    p.add_argument("message", metavar="MESSAGE")
    p.set_defaults(run=_admin, verb="maintenance")


def status(bot: dict[str, Any]) -> str:
    """One word for what a bot is doing, worst condition first."""
    if bot.get("is_dead"):
        return "dead"
    if bot.get("quarantined"):
        return "quarantined"
    if bot.get("maintenance_msg"):
        return "maintenance"
    if bot.get("task_id"):
        return "busy"
    return "terminating" if bot.get("termination_requested") else "idle"


def _dimension(bot: dict[str, Any], key: str) -> str:
    for pair in bot.get("dimensions", []):
        if pair.get("key") == key:
            return "|".join(pair.get("value", []))
    return ""


def _list(args: argparse.Namespace) -> int:
    query: dict[str, Any] = {"dimensions": [f"{k}:{v}" for k, v in args.dimensions]}
    for name in ("is_dead", "is_busy", "quarantined", "limit", "cursor"):
        if getattr(args, name) is not None:
            query[name] = getattr(args, name)
    return render.listing(
        client_of(args).get("/bots", query),
        args.json,
        ["id", "status", "task", *LISTED_DIMENSIONS, "version", "seen"],
        lambda b: [
            str(b["bot_id"]),
            status(b),
            str(b.get("task_id", "")),
            *(_dimension(b, key) for key in LISTED_DIMENSIONS),
            str(b.get("version", ""))[:12],
            render.age(b.get("last_seen_ts", "")),
        ],
    )


def _show(args: argparse.Namespace) -> int:
    client = client_of(args)
    path = f"/bots/{quote(args.bot_id)}"
    bot: dict[str, Any] = client.get(path)
    events: dict[str, Any] | None = client.get(f"{path}/events") if args.events else None
    if args.json:
        render.print_json({"bot": bot, "events": events} if args.events else bot)
        return 0
    render.fields(
        [
            ("bot", str(bot.get("bot_id", ""))),
            ("status", status(bot)),
            ("quarantined", str(bot.get("quarantine_message", ""))),
            ("maintenance", str(bot.get("maintenance_msg", ""))),
            ("termination", "requested" if bot.get("termination_requested") else ""),
            ("task", str(bot.get("task_id", ""))),
            ("task name", str(bot.get("task_name", ""))),
            ("group", str(bot.get("bot_group", ""))),
            ("address", str(bot.get("external_ip", ""))),
            ("version", str(bot.get("version", ""))),
            ("first seen", render.when(bot.get("first_seen_ts", ""))),
            ("last seen", render.when(bot.get("last_seen_ts", ""))),
        ]
    )
    print("dimensions:")
    for pair in bot.get("dimensions", []):
        print(f"  {pair.get('key', '')}: {', '.join(pair.get('value', []))}")
    if events is not None:
        print()
        render.table(
            ["when", "event", "task", "message"],
            [
                [
                    render.age(e.get("ts", "")) + " ago",
                    str(e.get("event_type", "")),
                    str(e.get("task_id", "")),
                    str(e.get("message", "")),
                ]
                for e in events.get("items", [])
            ],
        )
    return 0


def _terminate(args: argparse.Namespace) -> int:
    answer: dict[str, Any] = client_of(args).post(f"/bots/{quote(args.bot_id)}:terminate")
    if args.json:
        render.print_json(answer)
    else:
        print(f"{args.bot_id}: asked to exit; termination task {answer.get('task_id', '?')}")
    return 0


def _admin(args: argparse.Namespace) -> int:
    body = {} if args.message is None else {"message": args.message}
    bot: dict[str, Any] = client_of(args).post(f"/bots/{quote(args.bot_id)}:{args.verb}", body)
    if args.json:
        render.print_json(bot)
        return 0
    detail = bot.get("quarantine_message") or bot.get("maintenance_msg") or ""
    print(f"{args.bot_id}: {status(bot)}" + (f" ({detail})" if detail else ""))
    return 0
