"""Validation of new task requests (PROTOCOL.md 4.1, DESIGN.md 4.2).

`validate` takes a request as the API decoded it (defaults applied) and
returns it normalized, or raises InvalidRequest naming the offending field.
`termination` drafts the task that terminates a bot.
"""

from __future__ import annotations

import posixpath
import re

from server import ids
from server.dimensions import normalize_pairs
from server.errors import InvalidRequest
from server.model import Bot, TaskProperties, TaskRequest, TaskSlice, evolve

DEFAULT_PRIORITY = 200
DEFAULT_EXECUTION_TIMEOUT_SECS = 3600
DEFAULT_GRACE_PERIOD_SECS = 30
DEFAULT_EXPIRATION_SECS = 3600
MAX_SLICES = 8
MAX_EXPIRATION_SECS = 7 * 24 * 3600
MAX_EXECUTION_TIMEOUT_SECS = 7 * 24 * 3600
MAX_GRACE_PERIOD_SECS = 3600
MAX_ENV_VARS = 64
MAX_TAGS = 256
MAX_TAG_LENGTH = 1024
MAX_RETRIES = 5
BOT_PING_TOLERANCE_RANGE = (60, 3600)
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def termination(bot: Bot) -> TaskRequest:
    """The draft of the task that terminates `bot`: pinned to it, of the highest priority."""
    pool = (bot.dimensions.get("pool") or ["default"])[0]
    return TaskRequest(
        task_id="",
        created_ts=0.0,
        name=f"Terminate {bot.bot_id}",
        priority=0,
        slices=[
            TaskSlice(
                properties=TaskProperties(
                    command=["terminate"],
                    dimensions=[("id", bot.bot_id), ("pool", pool)],
                ),
                expiration_secs=MAX_EXPIRATION_SECS,
            )
        ],
        tags=[f"terminate:{bot.bot_id}"],
        bot_ping_tolerance_secs=BOT_PING_TOLERANCE_RANGE[1],
        is_termination=True,
    )


def validate(request: TaskRequest) -> TaskRequest:
    """Checks every field of a new request; returns it with dimensions normalized."""
    if not request.name.strip():
        raise InvalidRequest("name is required")
    if not 0 <= request.priority <= 255:
        raise InvalidRequest(f"priority must be in 0..255, not {request.priority}")
    if not request.slices:
        raise InvalidRequest("task_slices: at least one slice is required")
    if len(request.slices) > MAX_SLICES:
        raise InvalidRequest(f"task_slices: at most {MAX_SLICES} slices are allowed")
    slices = [_validate_slice(s, f"task_slices[{i}]") for i, s in enumerate(request.slices)]
    total = sum(s.expiration_secs for s in slices)
    if total > MAX_EXPIRATION_SECS:
        raise InvalidRequest(
            f"task_slices: expirations add up to {total} s, at most {MAX_EXPIRATION_SECS}"
        )
    _validate_tags(request.tags)
    _validate_service_account(request.service_account)
    low, high = BOT_PING_TOLERANCE_RANGE
    if not low <= request.bot_ping_tolerance_secs <= high:
        raise InvalidRequest(f"bot_ping_tolerance_secs must be in {low}..{high}")
    if not 0 <= request.max_retries <= MAX_RETRIES:
        raise InvalidRequest(f"max_retries must be in 0..{MAX_RETRIES}")
    if request.parent_task_id and not ids.is_task_id(request.parent_task_id):
        raise InvalidRequest(f"parent_task_id {request.parent_task_id!r} is not a task ID")
    if len(request.request_uuid) > 128:
        raise InvalidRequest("request_uuid is longer than 128 characters")
    return evolve(request, slices=slices)


def _validate_slice(task_slice: TaskSlice, where: str) -> TaskSlice:
    if not 1 <= task_slice.expiration_secs <= MAX_EXPIRATION_SECS:
        raise InvalidRequest(f"{where}.expiration_secs must be in 1..{MAX_EXPIRATION_SECS}")
    props = _validate_properties(task_slice.properties, f"{where}.properties")
    return evolve(task_slice, properties=props)


def _validate_properties(props: TaskProperties, where: str) -> TaskProperties:
    if not props.command or not all(isinstance(c, str) for c in props.command):
        raise InvalidRequest(f"{where}.command must be a non-empty list of strings")
    if not props.command[0]:
        raise InvalidRequest(f"{where}.command[0] must not be empty")
    try:
        dimensions = normalize_pairs(props.dimensions)
    except InvalidRequest as e:
        raise InvalidRequest(f"{where}.dimensions: {e.detail}") from e
    pools = [v for k, v in dimensions if k == "pool"]
    if len(pools) != 1 or "|" in pools[0]:
        raise InvalidRequest(f"{where}.dimensions: 'pool' is required, with exactly one value")
    bot_ids = [v for k, v in dimensions if k == "id"]
    if len(bot_ids) > 1 or any("|" in v for v in bot_ids):
        # `id` pins the slice to one bot: its queue is that bot's alone.
        raise InvalidRequest(f"{where}.dimensions: 'id' takes at most one value, without '|'")
    if len(props.env) > MAX_ENV_VARS:
        raise InvalidRequest(f"{where}.env: at most {MAX_ENV_VARS} variables are allowed")
    for key in list(props.env) + list(props.env_prefixes):
        if not _ENV_KEY_RE.fullmatch(key):
            raise InvalidRequest(f"{where}.env: variable name {key!r} is invalid")
    for key, paths in props.env_prefixes.items():
        for path in paths:
            _check_relative(path, f"{where}.env_prefixes[{key!r}]")
    if props.relative_cwd:
        _check_relative(props.relative_cwd, f"{where}.relative_cwd")
    if not 1 <= props.execution_timeout_secs <= MAX_EXECUTION_TIMEOUT_SECS:
        raise InvalidRequest(
            f"{where}.execution_timeout_secs must be in 1..{MAX_EXECUTION_TIMEOUT_SECS}"
        )
    if not 0 <= props.io_timeout_secs <= MAX_EXECUTION_TIMEOUT_SECS:
        raise InvalidRequest(f"{where}.io_timeout_secs must be in 0..{MAX_EXECUTION_TIMEOUT_SECS}")
    if not 0 <= props.grace_period_secs <= MAX_GRACE_PERIOD_SECS:
        raise InvalidRequest(f"{where}.grace_period_secs must be in 0..{MAX_GRACE_PERIOD_SECS}")
    for i, cache in enumerate(props.caches):
        if not re.fullmatch(r"[a-z0-9_]{1,64}", cache.name):
            raise InvalidRequest(f"{where}.caches[{i}].name {cache.name!r} is invalid")
        _check_relative(cache.path, f"{where}.caches[{i}].path")
    for i, output in enumerate(props.outputs):
        _check_relative(output, f"{where}.outputs[{i}]")
    return evolve(props, dimensions=dimensions)


def _check_relative(path: str, where: str) -> None:
    normalized = posixpath.normpath(path)
    if not path or path.startswith("/") or normalized == ".." or normalized.startswith("../"):
        raise InvalidRequest(f"{where}: {path!r} must be a relative path inside the task's dir")


def _validate_tags(tags: list[str]) -> None:
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"tags: at most {MAX_TAGS} tags are allowed")
    for tag in tags:
        key, sep, _ = tag.partition(":")
        if not sep or not key or len(tag) > MAX_TAG_LENGTH:
            raise InvalidRequest(f"tags: {tag!r} is not of the form key:value")


def _validate_service_account(account: str) -> None:
    if account not in ("none", "bot") and not _EMAIL_RE.fullmatch(account):
        raise InvalidRequest(
            f"service_account {account!r} must be 'none', 'bot' or a service account email"
        )
