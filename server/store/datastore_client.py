# mypy: disallow-untyped-calls=False
# (google-cloud-datastore ships py.typed but leaves its functions unannotated:
# every call into it returns Any, which this module turns into typed values.)
"""The Cloud Datastore client as the Datastore backend uses it.

What server/store/datastore*.py share: kinds, entity and key builders, the
order-preserving text form of a timestamp, and the two retry loops. Every
function here blocks; DatastoreStore runs them in its worker threads.

Contention: Datastore reports that a transaction collided with another one
(or a write with a burst of writes to the same entity) as ABORTED, which
google.api_core raises as `Aborted`, a `Conflict`; nothing was committed,
so running the whole read-check-write again is safe. Other errors are not
retried here: a DEADLINE_EXCEEDED on commit may or may not have committed.
"""

from __future__ import annotations

import contextlib
import math
import random
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from google.api_core import exceptions as api_errors
from google.cloud import datastore
from google.cloud.datastore.query import PropertyFilter

from server import errors
from server.store import codec

# Kinds (see the entity design in server/store/datastore.py).
TASK_REQUEST = "TaskRequest"
TASK_REQUEST_UUID = "TaskRequestUuid"
TASK_RESULT = "TaskResult"
TASK_REPORT = "TaskReport"
TASK_REPORT_LOG = "TaskReportLog"
TASK_REPORT_KEY = "TaskReportKey"
BOT = "Bot"
BOT_EVENT = "BotEvent"
POLL_REPLY = "PollReply"
QUEUE = "Queue"
OUTPUT = "Output"
OUTPUT_CHUNK = "OutputChunk"
STORE_META = "StoreMeta"

# Runs of a transaction (or an idempotent write) before giving up with
# Contention. With the backoff below the last run starts 0.15-0.45 s after
# the first: long enough to outlast a burst of claims on one task, short
# enough that a poll or an API call fails fast (503) when an entity stays hot.
ATTEMPTS = 5
BACKOFF_BASE_SECS = 0.02
BACKOFF_MAX_SECS = 0.5

# Keys per lookup (Datastore takes at most 1000 in one).
LOOKUP_BATCH = 500

T = TypeVar("T")
R = TypeVar("R", bound=codec.Record)


class Contention(errors.Unavailable):
    """Too many concurrent writes to the same records, try again."""


def connect(project: str | None, namespace: str | None, database: str | None = None) -> Any:
    """Returns a client of `project`'s `database` (None: the default one), in `namespace`.

    The library reads DATASTORE_EMULATOR_HOST itself: when it is set, the
    client talks to that emulator with anonymous credentials (it refuses
    explicit ones then), else it finds Application Default Credentials. A
    project of None is found the library's way: $DATASTORE_DATASET,
    $GOOGLE_CLOUD_PROJECT, then the credentials' own project.
    """
    return datastore.Client(project=project, namespace=namespace, database=database)


def close(client: Any) -> None:
    """Closes the client's gRPC channel and HTTP session."""
    # The library has no public way to close its gRPC channel; without this a
    # server that opens and closes stores leaks a channel (and its threads) each time.
    api = getattr(client, "_datastore_api_internal", None)
    if api is not None:
        api.transport.close()
    client.close()


def key(client: Any, kind: str, name: str) -> Any:
    """The key of the `kind` entity named `name`, in the client's namespace."""
    return client.key(kind, name)


def make_entity(
    client: Any,
    kind: str,
    name: str,
    indexed: Mapping[str, Any],
    unindexed: Mapping[str, Any],
) -> Any:
    """Builds an entity; only the `indexed` properties enter indexes.

    A property left out of `indexed` (rather than set to None) keeps the
    entity out of every index on that property, which is how queues, due
    dates and dedup candidates hold only the entities they are about.
    """
    entity = datastore.Entity(key(client, kind, name), exclude_from_indexes=tuple(unindexed))
    entity.update(indexed)
    entity.update(unindexed)
    return entity


def load(cls: type[R], entity: Any) -> R:
    """Rebuilds the record kept whole in an entity's `data` property."""
    return codec.loads(cls, str(entity["data"]))


def query(
    client: Any,
    kind: str,
    *filters: tuple[str, str, Any],
    order: Sequence[str] = (),
    keys_only: bool = False,
) -> Any:
    """A query of `kind`: (property, operator, value) filters ANDed, sorted by `order`."""
    built = client.query(kind=kind, order=list(order))
    for name, operator, value in filters:
        built.add_filter(filter=PropertyFilter(name, operator, value))
    if keys_only:
        built.keys_only()
    return built


def get_multi(client: Any, keys: Iterable[Any], transaction: Any = None) -> dict[Any, Any]:
    """Looks up several keys at once; returns the found entities by key."""
    found = client.get_multi(list(keys), transaction=transaction)
    return {entity.key: entity for entity in found}


def sortable(ts: float) -> str:
    """Returns `ts` as 16 hex digits whose text order is the numeric order.

    Datastore orders a string property bytewise, so a sort key that ends in
    an ID and starts with this gives "by time, then by ID" in one property.
    """
    if math.isnan(ts):
        raise ValueError("cannot order NaN")
    (bits,) = struct.unpack(">Q", struct.pack(">d", float(ts) + 0.0))
    # Flip all bits of negatives and the sign bit of the rest: IEEE order as unsigned.
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63
    return f"{bits:016x}"


def is_contention(error: BaseException) -> bool:
    """True for Datastore's "collided, nothing committed" errors (see the module docstring)."""
    return isinstance(error, api_errors.Conflict) and not isinstance(
        error, api_errors.AlreadyExists
    )


def run_transaction(client: Any, work: Callable[[Any], T], *, attempts: int = ATTEMPTS) -> T:
    """Runs `work(transaction)` in a read-write transaction and commits it.

    `work` reads through the transaction (`client.get(key, transaction=tx)`)
    and stages writes on it (`tx.put`). On contention the whole of `work`
    runs again in a fresh transaction, so it must only compute: its last run
    is the one that counts. An exception from `work` rolls back and
    propagates. Raises Contention after `attempts` collisions.
    """
    last: api_errors.GoogleAPICallError | None = None
    for attempt in range(attempts):
        if last is not None:
            _backoff(attempt)
        # begin_later: the first lookup starts the transaction, saving a round trip.
        tx = client.transaction(begin_later=True)
        try:
            try:
                value = work(tx)
            except BaseException:
                # The error is what matters; a failed rollback only ends the transaction sooner.
                with contextlib.suppress(api_errors.GoogleAPICallError, ValueError):
                    tx.rollback()
                raise
            tx.commit()
        except api_errors.GoogleAPICallError as e:
            if not is_contention(e):
                raise
            last = e
            continue
        return value
    raise Contention(f"gave up after {attempts} tries: {last}") from last


def retry_write(write: Callable[[], T], *, attempts: int = ATTEMPTS) -> T:
    """Runs an idempotent non-transactional write, again when it hits contention."""
    last: api_errors.GoogleAPICallError | None = None
    for attempt in range(attempts):
        if last is not None:
            _backoff(attempt)
        try:
            return write()
        except api_errors.GoogleAPICallError as e:
            if not is_contention(e):
                raise
            last = e
    raise Contention(f"gave up after {attempts} tries: {last}") from last


def translate_errors(call: Callable[[], T]) -> T:
    """Runs `call`, turning Datastore's transient failures into errors.Unavailable.

    These are the ones a caller fixes by trying again later (a 503 for an
    API client, a retry for a bot); anything else is a bug and propagates.
    """
    try:
        return call()
    except (
        api_errors.ServiceUnavailable,
        api_errors.DeadlineExceeded,
        api_errors.InternalServerError,
        api_errors.TooManyRequests,
        api_errors.Aborted,
    ) as e:
        raise errors.Unavailable(f"Datastore: {e.message}") from e


def _backoff(attempt: int) -> None:
    """Sleeps before retry number `attempt` (from 1): exponential, jittered to spread runs."""
    delay = min(BACKOFF_MAX_SECS, BACKOFF_BASE_SECS * 2 ** (attempt - 1))
    time.sleep(delay * random.uniform(0.5, 1.5))
