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
