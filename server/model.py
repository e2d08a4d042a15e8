"""The domain records: tasks, their results, bots, bot events and queues.

Frozen dataclasses; a change is a `dataclasses.replace`. The service layer
computes new records from old ones; the Store persists them. The client API
converts them to and from its protobuf messages; nothing else sees protobuf.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

# A bot's dimensions: key -> values (a bot may have several values per key).
BotDimensions = dict[str, list[str]]
# Requested dimensions: sorted (key, value) pairs; a value may list "a|b" alternatives.
DimensionPairs = list[tuple[str, str]]


class TaskState(enum.IntEnum):
    """Task states, valued as in Swarming (PROTOCOL.md 4.3)."""

    RUNNING = 0x10
    PENDING = 0x20
    EXPIRED = 0x30
    TIMED_OUT = 0x40
    BOT_DIED = 0x50
    CANCELED = 0x60
    COMPLETED = 0x70
    KILLED = 0x80
    NO_RESOURCE = 0x100
    CLIENT_ERROR = 0x200

    @property
    def is_active(self) -> bool:
        """PENDING and RUNNING are active; every other state is final."""
        return self in (TaskState.PENDING, TaskState.RUNNING)


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    name: str
    path: str


@dataclasses.dataclass(frozen=True)
class TaskProperties:
    """What to run and where: one slice's properties (PROTOCOL.md 4.1)."""

    command: list[str]
    dimensions: DimensionPairs
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    env_prefixes: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    relative_cwd: str = ""
    execution_timeout_secs: int = 3600
    io_timeout_secs: int = 1200
    grace_period_secs: int = 30
    idempotent: bool = False
    caches: list[CacheEntry] = dataclasses.field(default_factory=list)
    outputs: list[str] = dataclasses.field(default_factory=list)
    secret_bytes: bytes = b""

    @property
    def pool(self) -> str:
        """The value of the required `pool` dimension."""
        return next((v for k, v in self.dimensions if k == "pool"), "")


@dataclasses.dataclass(frozen=True)
class TaskSlice:
    properties: TaskProperties
    expiration_secs: int
    wait_for_capacity: bool = False


@dataclasses.dataclass(frozen=True)
class TaskRequest:
    """A task as submitted; immutable once stored."""

    task_id: str
    created_ts: float
    name: str
    priority: int
    slices: list[TaskSlice]
    tags: list[str] = dataclasses.field(default_factory=list)
    user: str = ""
    service_account: str = "none"
    parent_task_id: str = ""
    bot_ping_tolerance_secs: int = 1200
    request_uuid: str = ""
    max_retries: int = 0
    authenticated_as: str = ""
    # A termination task: the bot it is pinned to gets `terminate` instead of a run.
    is_termination: bool = False

    def slice_expiration_ts(self, index: int) -> float:
        """When slice `index` expires: cumulative from the request's creation."""
        return self.created_ts + sum(s.expiration_secs for s in self.slices[: index + 1])


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """The user-visible state of a task and of its current run (try).

    `version` is the compare-and-set counter: the Store refuses a write whose
    version is not the stored one and bumps it on every accepted write.
    While the task is PENDING and not paused, `queue_key`, `priority`,
    `created_ts` and `expiration_ts` place it in its queue.
    """

    task_id: str
    state: TaskState
    created_ts: float
    modified_ts: float
    priority: int
    name: str = ""
    user: str = ""
    tags: list[str] = dataclasses.field(default_factory=list)
    version: int = 0
    current_slice: int = 0
    queue_key: str = ""
    expiration_ts: float = 0.0
    try_number: int = 0
    bot_id: str = ""
    bot_dimensions: BotDimensions = dataclasses.field(default_factory=dict)
    bot_version: str = ""
    started_ts: float | None = None
    completed_ts: float | None = None
    abandoned_ts: float | None = None
    # A "run" answer reserves the task; `claim` or the first task_update confirms it.
    reserved_until: float | None = None
    claim_id: str = ""
    dead_after_ts: float | None = None
    duration: float | None = None
    exit_code: int | None = None
    failure: bool = False
    internal_failure: bool = False
    hard_timeout: bool = False
    io_timeout: bool = False
    cost_usd: float = 0.0
    deduped_from: str = ""
    killing: bool = False
    # With `killing`: once the run has stopped, queue the task again (`:restart`).
    restarting: bool = False
    paused: bool = False
    error: str = ""
    # Set when the task completed successfully and may be reused by dedup:
    # the hash of its slice's properties (server/scheduler/dedup.py).
    properties_hash: str = ""
    # The finished task this one reruns (`:retry`).
    retry_of: str = ""
    # Set when a child names this task as its parent; cleared once this task
    # has ended and its children were told to stop (server/scheduler/children.py).
    # While an ended task keeps it, the sweeper finds it due.
    children_to_stop: bool = False
    # A child's: when a sweep looks at its parent once, in case the parent
    # ended unseen while the child was being stored (server/scheduler/children.py).
    # None once looked at and for tasks without a parent; ignored once the task ended.
    parent_check_ts: float | None = None

    @property
    def run_id(self) -> str:
        """The ID of the current run: the task ID with the try number as last digit."""
        return run_id_of(self.task_id, self.try_number or 1)

    @property
    def is_dispatchable(self) -> bool:
        """True when the task waits in a queue for a bot."""
        return self.state is TaskState.PENDING and not self.paused and bool(self.queue_key)


def run_id_of(task_id: str, try_number: int) -> str:
    """Builds a run ID (PROTOCOL.md 4.2): the last hex digit is the try number."""
    return f"{task_id[:-1]}{try_number:x}"


@dataclasses.dataclass(frozen=True)
class Bot:
    """What the server knows of a bot (Swarming's BotInfo)."""

    bot_id: str
    group: str = ""
    dimensions: BotDimensions = dataclasses.field(default_factory=dict)
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: str = ""
    session_id: str = ""
    first_seen_ts: float = 0.0
    last_seen_ts: float = 0.0
    external_ip: str = ""
    authenticated_as: str = ""
    # Why the bot takes no tasks; empty when it does.
    quarantined: str = ""
    maintenance: str = ""
    # The run the bot works on, empty when idle.
    task_id: str = ""
    task_name: str = ""
    termination_task_id: str = ""
    # Set by an admin through the API; they survive the bot's own reports.
    admin_quarantine: str = ""
    admin_maintenance: str = ""


@dataclasses.dataclass(frozen=True)
class BotEvent:
    bot_id: str
    ts: float
    event_type: str
    message: str = ""
    dimensions: BotDimensions = dataclasses.field(default_factory=dict)
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: str = ""
    task_id: str = ""
    quarantined: str = ""
    maintenance: str = ""


@dataclasses.dataclass(frozen=True)
class Queue:
    """A set of requested dimensions; pending slices wait in the queue of theirs."""

    key: str
    dimensions: DimensionPairs
    created_ts: float


@dataclasses.dataclass(frozen=True)
class SigningKey:
    """A key that signs one kind of minted token (server/auth/keyring.py).

    Keys of a `purpose` take turns: each signs from `active_ts` until
    `retire_ts`, and is published (JWKS) from its creation, a little before it
    signs, until `expires_ts`, when the last token it signed has expired.
    `material` is the secret: a PKCS#8 PEM private key or an HMAC key.
    """

    purpose: str
    key_id: str
    algorithm: str
    material: bytes = dataclasses.field(repr=False)
    created_ts: float
    active_ts: float
    retire_ts: float
    expires_ts: float


@dataclasses.dataclass(frozen=True)
class UnitResult:
    """One test's outcome, in Harbormaster's shape."""

    name: str
    result: str  # pass, fail, skip, broken or unsound
    namespace: str = ""
    engine: str = ""
    duration: float | None = None
    path: str = ""
    details: str = ""


@dataclasses.dataclass(frozen=True)
class LintResult:
    """One lint message, in Harbormaster's shape."""

    name: str
    code: str
    severity: str  # advice, autofix, warning, error or disabled
    path: str = ""
    line: int | None = None
    char: int | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class WorkMessage:
    """A progress note a task sent while it worked."""

    ts: float
    message: str


@dataclasses.dataclass(frozen=True)
class TaskReport:
    """Structured results reported for a task, by the task itself or through the API."""

    unit: list[UnitResult] = dataclasses.field(default_factory=list)
    lint: list[LintResult] = dataclasses.field(default_factory=list)
    work: list[WorkMessage] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.unit or self.lint or self.work)


def merge_reports(reports: Iterable[TaskReport]) -> TaskReport:
    """One report holding the items of `reports`, in order."""
    merged = TaskReport()
    for report in reports:
        merged.unit.extend(report.unit)
        merged.lint.extend(report.lint)
        merged.work.extend(report.work)
    return merged


@dataclasses.dataclass(frozen=True)
class ApiToken:
    """An API token as stored (server/auth/tokens.py): its digest, never its secret.

    A caller presenting the token acts as "user:<name>" with `role` (admin,
    scheduler or viewer) until `expires_ts` (None: never) or until it is
    revoked (`revoked_ts` set).
    """

    token_id: str
    name: str
    role: str
    # Hex SHA-256 of the whole token text.
    sha256: str = dataclasses.field(repr=False)
    created_ts: float
    created_by: str = ""
    expires_ts: float | None = None
    revoked_ts: float | None = None


T = TypeVar("T")
Record = TypeVar("Record")

# Field names of each record type, for evolve's check.
_FIELD_NAMES: dict[type, frozenset[str]] = {}


def evolve(record: Record, /, **changes: Any) -> Record:
    """`dataclasses.replace` for the frozen records here, about ten times faster.

    The scheduler changes records on every bot call, and replace's loop over
    every field (then the frozen __init__) was a large share of a call. The
    copy shares the unchanged values, as replace does. Unknown field names
    raise TypeError, as replace does; the records have no __post_init__ or
    init=False fields to run (checked the first time a type is used).
    """
    cls = type(record)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        if hasattr(cls, "__post_init__") or not all(f.init for f in fields):
            raise TypeError(f"evolve cannot copy a {cls.__name__}: it needs its __init__")
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in fields)
    if not names.issuperset(changes):
        unknown = ", ".join(sorted(set(changes) - names))
        raise TypeError(f"{cls.__name__} has no field {unknown}")
    copy = object.__new__(cls)
    values = dict(record.__dict__)
    values.update(changes)
    object.__setattr__(copy, "__dict__", values)
    return copy


@dataclasses.dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; `cursor` is empty on the last page."""

    items: list[T]
    cursor: str = ""


@dataclasses.dataclass(frozen=True)
class BotQuery:
    # "key:value" pairs the bot must have.
    dimensions: DimensionPairs = dataclasses.field(default_factory=list)
    quarantined: bool | None = None
    is_busy: bool | None = None
    # With is_dead set, a bot is dead when last seen before this time.
    dead_before: float = 0.0
    is_dead: bool | None = None
    limit: int = 100
    cursor: str = ""


@dataclasses.dataclass(frozen=True)
class TaskQuery:
    states: frozenset[TaskState] = frozenset()
    # Every tag listed must be on the task.
    tags: list[str] = dataclasses.field(default_factory=list)
    bot_id: str = ""
    created_after: float | None = None
    created_before: float | None = None
    limit: int = 100
    cursor: str = ""
