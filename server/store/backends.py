"""Choosing the Store backend: SQLite in the state directory, or Cloud Datastore.

`drover serve --store ...` (server/cli/serve.py) fills a StoreOptions; the
app factory and the admin commands that work on the Store directly open
it with `open_store`. SQLite is for one server process; Datastore for
several replicas on one database (DESIGN.md 7).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from server.clock import Clock
from server.errors import DroverError
from server.store.base import Store

SQLITE = "sqlite"
DATASTORE = "datastore"
BACKENDS = (SQLITE, DATASTORE)
SQLITE_FILE = "drover.sqlite3"
# The project the gcloud emulator scripts export (`gcloud beta emulators
# datastore env-init`), read when no project is given.
PROJECT_ENV = "DATASTORE_PROJECT_ID"


class StoreUnavailable(DroverError):
    """The store cannot be opened"""


@dataclasses.dataclass(frozen=True)
class StoreOptions:
    """Which backend holds the server's state, and where."""

    backend: str = SQLITE
    # Datastore only. The Google Cloud project; None: $DATASTORE_PROJECT_ID,
    # else the client library's own search ($DATASTORE_DATASET,
    # $GOOGLE_CLOUD_PROJECT, the credentials' project).
    project: str | None = None
    # The namespace (None: the default one) and database ID (None: "(default)").
    namespace: str | None = None
    database: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown store {self.backend!r}; known: {', '.join(BACKENDS)}")
        if self.backend == SQLITE and (self.project or self.namespace or self.database):
            raise ValueError("a Datastore project, namespace or database needs the datastore store")

    @property
    def is_shared(self) -> bool:
        """True for a backend that several server replicas may share."""
        return self.backend == DATASTORE

    def describe(self) -> str:
        """Where the state lives, for logs (no secrets in it)."""
        if self.backend == SQLITE:
            return SQLITE
        where = [
            f"project {self.project or os.environ.get(PROJECT_ENV) or '(from the environment)'}",
            *([f"database {self.database}"] if self.database else []),
            *([f"namespace {self.namespace}"] if self.namespace else []),
        ]
        emulator = os.environ.get("DATASTORE_EMULATOR_HOST")
        return f"datastore ({', '.join(where)}{f', emulator {emulator}' if emulator else ''})"


async def open_store(options: StoreOptions, state_dir: pathlib.Path, clock: Clock) -> Store:
    """Opens the store `options` name; raises StoreUnavailable saying why it cannot.

    SQLite's file is in `state_dir`, which must exist.
    A Datastore store is checked with one transaction (DatastoreStore.check),
    so that missing credentials, a wrong project, a missing database or no
    write access stop the server at start with a message rather than
    failing every call later.
    """
    if options.backend == SQLITE:
        from server.store.sqlite import SqliteStore

        return await SqliteStore.open(state_dir / SQLITE_FILE, clock=clock)
    # Imported here: a SQLite server never loads the Google Cloud libraries.
    from google.api_core import exceptions as api_errors
    from google.auth import exceptions as auth_errors

    from server.store.datastore import DatastoreStore

    project = options.project or os.environ.get(PROJECT_ENV) or None
    try:
        store = await DatastoreStore.open(
            project, namespace=options.namespace, database=options.database, clock=clock
        )
    except (auth_errors.DefaultCredentialsError, OSError) as e:
        raise StoreUnavailable(
            f"{options.describe()}: {e} (give --datastore-project, and credentials with"
            " `gcloud auth application-default login` or $GOOGLE_APPLICATION_CREDENTIALS;"
            " for the emulator set $DATASTORE_EMULATOR_HOST)"
        ) from e
    try:
        await store.check()
    except (api_errors.GoogleAPICallError, auth_errors.GoogleAuthError, DroverError) as e:
        await store.close()
        raise StoreUnavailable(f"{options.describe()}: {e}") from e
    return store
