"""Commands that act on the server's state directly, on the server's machine.

Whoever can read the state directory holds the server's keys and database
already, so these need no API token: that is how the first admin token is
made (`drover token create --state-dir`). They open the SQLite store the
server keeps there; a running server sees their changes at once.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from server.cli.options import Failure

if TYPE_CHECKING:
    from server.store.sqlite import SqliteStore

# The database file `drover serve` keeps in its state directory.
STORE_FILE = "drover.sqlite3"


@contextlib.asynccontextmanager
async def state_store(state_dir: pathlib.Path) -> AsyncIterator[SqliteStore]:
    """The store in `state_dir`, closed on exit. Raises Failure when there is none.

    A missing database is refused rather than created: a mistyped path
    would otherwise put the change where no server ever looks.
    """
    # Imported here so that client commands start without loading the server.
    from server.clock import SystemClock
    from server.store.sqlite import SqliteStore

    database = state_dir / STORE_FILE
    if not database.is_file():
        raise Failure(
            f"{database} does not exist: --state-dir must be the server's state directory"
        )
    store = await SqliteStore.open(database, clock=SystemClock())
    try:
        yield store
    finally:
        await store.close()
