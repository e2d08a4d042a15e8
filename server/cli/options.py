"""Command-line plumbing shared by every `drover` command group.

The global client options (`--server`, `--json`, `--token`), argument types
for `key=value` and `key:value` pairs, and the exceptions a command raises for
an expected failure: `main` turns them into a message and an exit status, never
a traceback.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TypeAlias

# The object `add_subparsers` returns; quoted because it is generic only for mypy.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

Command = Callable[[argparse.Namespace], int]

DEFAULT_SERVER = "http://127.0.0.1:8080"


class UsageError(Exception):
    """The command line is wrong in a way argparse cannot see; exit status 2."""


class Failure(Exception):
    """An expected failure with its message; exit status 1."""


def server_url(value: str) -> str:
    """An argparse type: an http(s) URL, without a trailing slash."""
    if not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


def key_value(value: str) -> tuple[str, str]:
    """An argparse type: `key=value` (the value may contain '=')."""
    key, sep, rest = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{value!r} is not of the form key=value")
    return key, rest


def tag(value: str) -> str:
    """An argparse type: a `key:value` tag."""
    key, sep, _ = value.partition(":")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{value!r} is not of the form key:value")
    return value


def duration_secs(value: str) -> int:
    """An argparse type: seconds, or a number with a unit: 90s, 30m, 12h, 90d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (value[:-1], value[-1]) if value[-1:] in units else (value, "s")
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration like 3600, 90m, 12h or 30d")
    return int(number) * units[unit]


def add_tag_option(p: argparse.ArgumentParser, help: str) -> None:
    """`--tag KEY:VALUE`, repeatable, into `args.tags`."""
    p.add_argument(
        "--tag", dest="tags", action="append", type=tag, default=[], metavar="KEY:VALUE", help=help
    )


def add_dimension_option(p: argparse.ArgumentParser, help: str) -> None:
    """`-d/--dimension KEY=VALUE`, repeatable, into `args.dimensions`."""
    p.add_argument(
        "-d",
        "--dimension",
        dest="dimensions",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help=help,
    )


def add_page_options(p: argparse.ArgumentParser) -> None:
    """`--limit` and `--cursor` of a listing."""
    p.add_argument("--limit", type=int, metavar="N", help="at most N (1-1000, default 100)")
    p.add_argument("--cursor", help="the next page, as printed by the previous one")


def add_client_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Adds the options of commands that talk to a server.

    The top-level parser holds the defaults; subcommands repeat the options
    with suppressed defaults so that `drover --json tasks` and
    `drover tasks --json` mean the same and neither overrides the other.
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--server",
        type=server_url,
        default=default(os.environ.get("DROVER_SERVER") or DEFAULT_SERVER),
        metavar="URL",
        help=f"the server to talk to (default: $DROVER_SERVER or {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the API's JSON instead of text",
    )
    parser.add_argument(
        "--token",
        default=default(os.environ.get("DROVER_TOKEN", "")),
        help="an API token, sent as 'Authorization: Bearer' (default: $DROVER_TOKEN)",
    )


def client_parent() -> argparse.ArgumentParser:
    """A parent parser giving a subcommand the client options."""
    parent = argparse.ArgumentParser(add_help=False)
    add_client_options(parent, suppress=True)
    return parent
