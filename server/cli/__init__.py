"""The `drover` command line: run a server, and drive one through its client API.

Each module adds one group of commands (`register`) whose handlers take the
parsed arguments and return the exit status. Expected failures never show a
traceback: usage errors exit 2; API errors, an unreachable server and other
`Failure`s exit 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from server import __version__
from server.cli import (
    bootstrap,
    bots,
    controls,
    follow,
    results,
    serve,
    session_keys,
    tasks,
    tokens,
    trigger,
)
from server.cli.client import ApiError, Unreachable
from server.cli.options import (
    Command,
    Failure,
    UsageError,
    add_client_options,
    client_parent,
)

USAGE_STATUS = 2


def parser() -> argparse.ArgumentParser:
    """The whole command line."""
    top = argparse.ArgumentParser(
        prog="drover",
        description="Drover: a self-hosted bot-fleet task scheduler.",
    )
    top.add_argument("--version", action="version", version=f"drover {__version__}")
    add_client_options(top, suppress=False)
    sub = top.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    parent = client_parent()
    for group in (serve, trigger, follow, tasks, controls, results, bots, tokens, bootstrap):
        group.register(sub, parent)
    session_keys.register(sub, parent)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `drover` console script."""
    args = parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except UsageError as e:
        print(f"drover {args.subcommand}: error: {e}", file=sys.stderr)
        return USAGE_STATUS
    except ApiError as e:
        print(f"drover: {e.message}", file=sys.stderr)
        return 1
    except (Unreachable, Failure) as e:
        print(f"drover: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`drover tasks | head`): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return follow.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
