"""Commands that act on the server's Store directly, on the server's machine.

Whoever can read the server's state (its state directory, or its Datastore
database) holds the server's keys already, so these need no API token:
that is how the first admin token is made (`drover token create
--state-dir state`, or `--store datastore` for replicas). They open the
same Store as `drover serve` with the same flags; a running server sees
their changes at once.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from server.cli.options import Failure
from server.cli.serve import add_store_options, store_options

if TYPE_CHECKING:
    from server.store.base import Store

DEFAULT_STATE_DIR = pathlib.Path("state")


def add_local_options(parser: argparse.ArgumentParser, *, optional: bool = False) -> None:
    """Adds --state-dir and the store flags of `drover serve`.

    With `optional`, the command acts on the Store only when one of them is
    given (and through the API otherwise); else --state-dir defaults to ./state.
    """
    parser.add_argument(
        "--state-dir",
        type=pathlib.Path,
        default=None if optional else DEFAULT_STATE_DIR,
        help="the server's state directory: act on its Store directly (no API token needed)"
        + ("" if optional else f" (default: ./{DEFAULT_STATE_DIR})"),
    )
    add_store_options(parser)


def is_local(args: argparse.Namespace) -> bool:
    """True when the flags name a Store to act on directly."""
    return args.state_dir is not None or args.store != "sqlite"


@contextlib.asynccontextmanager
async def state_store(args: argparse.Namespace) -> AsyncIterator[Store]:
    """The Store the flags of add_local_options name, closed on exit; Failure if it is not there.

    A missing SQLite database is refused rather than created: a mistyped
    path would otherwise put the change where no server ever looks.
    """
    # Imported here so that client commands start without loading the server.
    from server.clock import SystemClock
    from server.store.backends import SQLITE, SQLITE_FILE, StoreUnavailable, open_store

    options = store_options(args)
    state_dir: pathlib.Path = args.state_dir or DEFAULT_STATE_DIR
    if options.backend == SQLITE and not (state_dir / SQLITE_FILE).is_file():
        raise Failure(
            f"{state_dir / SQLITE_FILE} does not exist: --state-dir must be the server's"
            " state directory"
        )
    try:
        store = await open_store(options, state_dir, SystemClock())
    except StoreUnavailable as e:
        raise Failure(str(e)) from e
    try:
        yield store
    finally:
        await store.close()
