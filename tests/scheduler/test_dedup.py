"""Dedup of idempotent tasks (server/scheduler/dedup.py): the hash, the source rule, the copy."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.model import CacheEntry, TaskProperties, TaskRequest, TaskResult, TaskSlice, TaskState
from server.scheduler import dedup
from server.store.sqlite import SqliteStore

NOW = 1_700_000_000.0
WINDOW = 7 * 24 * 3600

PROPS = TaskProperties(
    command=["python3", "run.py"],
    dimensions=[("os", "Linux"), ("pool", "ci")],
    env={"A": "1"},
    secret_bytes=b"s3cret",
)


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    """A fresh SqliteStore in tmp_path, closed at teardown."""
    opened = await SqliteStore.open(tmp_path / "drover.sqlite3")
    yield opened
    await opened.close()


def request_of(*slices: TaskProperties, n: int = 1) -> TaskRequest:
    """A request with one slice per properties, task ID from `n`."""
    return TaskRequest(
        task_id=f"{n:015x}0",
        created_ts=NOW,
        name=f"task {n}",
        priority=100,
        slices=[TaskSlice(properties=p, expiration_secs=600) for p in slices],
    )


def result_of(request: TaskRequest, **changes: Any) -> TaskResult:
    """The result of `request` after a clean exit on slice 0, with `changes` applied."""
    result = TaskResult(
        task_id=request.task_id,
        state=TaskState.COMPLETED,
        created_ts=NOW - 100,
        modified_ts=NOW - 10,
        priority=request.priority,
        try_number=1,
        bot_id="bot1",
        started_ts=NOW - 90,
        completed_ts=NOW - 10,
        duration=80.0,
        exit_code=0,
        cost_usd=0.5,
    )
    return dataclasses.replace(result, **changes)


async def store_source(store: SqliteStore, request: TaskRequest, **changes: Any) -> TaskResult:
    """Stores `request` finished as `result_of` says, with the hash reusable_hash gives it."""
    result = result_of(request, **changes)
    result = dataclasses.replace(result, properties_hash=dedup.reusable_hash(request, result))
    stored, created = await store.create_task(request, result)
    assert created
    return stored


# The hash.


def test_hash_is_pinned() -> None:
    """The hash of fixed properties never changes: stored hashes must stay matchable."""
    assert dedup.properties_hash(PROPS) == (
        "007b9d3599074c28add3b66a1ea19de9bc1d00b9ec5f043909fc6d8a87afdbe6"
    )


def test_hash_ignores_order_of_sets() -> None:
    """Dimensions, OR operands, env, caches and outputs hash the same in any order."""
    one = dataclasses.replace(
        PROPS,
        dimensions=[("gpu", "amd|nvidia"), ("os", "Linux"), ("pool", "ci")],
        env={"A": "1", "B": "2"},
        caches=[CacheEntry("a", "c/a"), CacheEntry("b", "c/b")],
        outputs=["x", "y"],
    )
    other = dataclasses.replace(
        one,
        dimensions=[("pool", "ci"), ("os", "Linux"), ("gpu", "nvidia|amd")],
        env={"B": "2", "A": "1"},
        caches=[CacheEntry("b", "c/b"), CacheEntry("a", "c/a")],
        outputs=["y", "x"],
    )
    assert dedup.properties_hash(one) == dedup.properties_hash(other)


def test_hash_ignores_idempotent_flag() -> None:
    """Marking a slice idempotent does not change its hash."""
    flagged = dataclasses.replace(PROPS, idempotent=True)
    assert dedup.properties_hash(flagged) == dedup.properties_hash(PROPS)


@pytest.mark.parametrize(
    "changes",
    [
        {"command": ["python3", "run.py", "--fast"]},
        {"command": ["run.py", "python3"]},
        {"dimensions": [("os", "Mac"), ("pool", "ci")]},
        {"env": {"A": "2"}},
        {"env_prefixes": {"PATH": ["bin"]}},
        {"relative_cwd": "src"},
        {"execution_timeout_secs": 60},
        {"io_timeout_secs": 60},
        {"grace_period_secs": 5},
        {"caches": [CacheEntry("a", "c/a")]},
        {"outputs": ["out.txt"]},
        {"secret_bytes": b"other"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_hash_covers_every_property(changes: dict[str, Any]) -> None:
    """Changing any property that reaches the bot changes the hash."""
    changed = dataclasses.replace(PROPS, **changes)
    assert dedup.properties_hash(changed) != dedup.properties_hash(PROPS)


def test_hashed_form_does_not_hold_the_secret() -> None:
    """The canonical form carries a digest of the secret, never the secret."""
    text = json.dumps(dedup.canonical_form(PROPS))
    assert "s3cret" not in text
    assert "secret_sha256" in text


# Which results are sources.


def test_reusable_hash_of_a_clean_idempotent_run() -> None:
    """A clean exit of an idempotent slice stores that slice's hash."""
    props = dataclasses.replace(PROPS, idempotent=True)
    request = request_of(props)
    assert dedup.reusable_hash(request, result_of(request)) == dedup.properties_hash(props)


@pytest.mark.parametrize(
    "changes",
    [
        {"exit_code": 1, "failure": True},
        {"state": TaskState.TIMED_OUT, "failure": True, "exit_code": -1},
        {"state": TaskState.KILLED, "failure": True},
        {"state": TaskState.BOT_DIED, "internal_failure": True, "failure": True},
        {"state": TaskState.RUNNING, "completed_ts": None, "exit_code": None},
        {"deduped_from": "1230", "try_number": 0},
    ],
    ids=["exit-1", "timed-out", "killed", "bot-died", "running", "copy"],
)
def test_reusable_hash_refuses_non_sources(changes: dict[str, Any]) -> None:
    """Failures, unfinished runs and dedup copies store no hash."""
    request = request_of(dataclasses.replace(PROPS, idempotent=True))
    assert dedup.reusable_hash(request, result_of(request, **changes)) == ""


def test_reusable_hash_follows_the_current_slice() -> None:
    """Only the slice the task ran decides: idempotent slice 1 counts, slice 0 does not."""
    idem = dataclasses.replace(PROPS, command=["other"], idempotent=True)
    request = request_of(PROPS, idem)
    assert dedup.reusable_hash(request, result_of(request)) == ""
    on_slice_1 = result_of(request, current_slice=1)
    assert dedup.reusable_hash(request, on_slice_1) == dedup.properties_hash(idem)


# Finding a source at creation.


async def test_find_dedup_finds_a_recent_source(store: SqliteStore) -> None:
    """A new idempotent task finds the latest clean run of the same properties."""
    props = dataclasses.replace(PROPS, idempotent=True)
    source = await store_source(store, request_of(props, n=1))
    found = await dedup.find_dedup(store, request_of(props, n=2), NOW, WINDOW)
    assert found == (0, source)


async def test_find_dedup_needs_idempotent_slices(store: SqliteStore) -> None:
    """A slice not marked idempotent is never deduped, even against an identical source."""
    await store_source(store, request_of(dataclasses.replace(PROPS, idempotent=True), n=1))
    assert await dedup.find_dedup(store, request_of(PROPS, n=2), NOW, WINDOW) is None


async def test_find_dedup_respects_the_window(store: SqliteStore) -> None:
    """A source that completed longer ago than the window is not reused."""
    props = dataclasses.replace(PROPS, idempotent=True)
    await store_source(store, request_of(props, n=1), completed_ts=NOW - 100)
    assert await dedup.find_dedup(store, request_of(props, n=2), NOW, 99) is None
    assert await dedup.find_dedup(store, request_of(props, n=3), NOW, 100) is not None


async def test_find_dedup_tries_slices_in_order(store: SqliteStore) -> None:
    """Without a source for slice 0, slice 1's source is used, with its index."""
    first = dataclasses.replace(PROPS, command=["first"], idempotent=True)
    second = dataclasses.replace(PROPS, command=["second"], idempotent=True)
    source = await store_source(store, request_of(second, n=1))
    assert await dedup.find_dedup(store, request_of(first, second, n=2), NOW, WINDOW) == (
        1,
        source,
    )


async def test_failed_run_is_not_a_source(store: SqliteStore) -> None:
    """A failed run of the same properties is not reused."""
    props = dataclasses.replace(PROPS, idempotent=True)
    await store_source(store, request_of(props, n=1), exit_code=3, failure=True)
    assert await dedup.find_dedup(store, request_of(props, n=2), NOW, WINDOW) is None


# The copy.


def test_deduped_result_copies_the_outcome() -> None:
    """The copy is COMPLETED now, names its source, has its exit code and duration, never ran."""
    request = request_of(dataclasses.replace(PROPS, idempotent=True), n=2)
    source = result_of(request_of(PROPS, n=1), properties_hash="h" * 64)
    new = TaskResult(
        task_id=request.task_id,
        state=TaskState.PENDING,
        created_ts=NOW,
        modified_ts=NOW,
        priority=50,
        name="mine",
        tags=["a:b"],
        queue_key="q",
        expiration_ts=NOW + 600,
    )
    copy = dedup.deduped_result(new, source, NOW + 1, 1)
    assert copy == dataclasses.replace(
        new,
        state=TaskState.COMPLETED,
        modified_ts=NOW + 1,
        completed_ts=NOW + 1,
        current_slice=1,
        queue_key="",
        expiration_ts=0.0,
        deduped_from=source.task_id,
        exit_code=0,
        duration=80.0,
    )
    assert copy.try_number == 0
    assert not copy.is_dispatchable
    assert copy.properties_hash == ""
