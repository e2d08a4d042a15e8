"""The background loop of two replicas on one Datastore: each due task changes once.

Every replica runs the sweeper (DESIGN.md 6). Here two servers, each with
its own DatastoreStore (client, threads) on one emulator namespace, sweep
the same due tasks at the same moment; their Datastore calls interleave in
their threads. Every change is a compare-and-set, so each task must end in
the one state its deadline calls for with exactly one write, and the two
counts must add up. tests/scheduler/test_sweeper_concurrency.py shows the
same of two processes on one SQLite file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.appkeys import STORE, SWEEPER
from server.clock import FakeClock
from tests.botapi.scripted import task_body
from tests.conftest import ServerFactory, app_of
from tests.store.datastore_emulator import Emulator, new_namespace

pytestmark = pytest.mark.datastore

TASKS_PER_KIND = 15
Replicas = list[TestClient]  # type: ignore[type-arg]


@pytest.fixture
async def replicas(
    make_server: ServerFactory, datastore_emulator: Emulator, clock: FakeClock
) -> AsyncIterator[Replicas]:
    """Two servers on one fresh Datastore namespace, sharing the test's clock."""
    namespace = new_namespace()
    stores = [await datastore_emulator.open_store(namespace, clock=clock) for _ in range(2)]
    yield [await make_server(store=store) for store in stores]
    for store in stores:
        await store.close()


def falling_back() -> dict[str, Any]:
    """A task whose first slice (a Mac nobody has) expires at 300 s, its second at 1800 s."""
    body = task_body(wait=True)
    linux = body["task_slices"][0]
    linux["expiration_secs"] = 1800
    mac = {
        "expiration_secs": 300,
        "wait_for_capacity": True,
        "properties": {
            "command": ["mac-only"],
            "dimensions": [{"key": "pool", "value": "default"}, {"key": "os", "value": "Mac"}],
        },
    }
    body["task_slices"] = [mac, linux]
    return body


async def test_sweepers_of_two_replicas_change_each_due_task_once(
    replicas: Replicas, clock: FakeClock
) -> None:
    """Sweeping at once on two replicas expires or falls back each task once, and counts add up."""
    expected: dict[str, tuple[str, int]] = {}
    for n in range(TASKS_PER_KIND):
        for body, outcome in (
            (task_body(wait=True), ("EXPIRED", 0)),
            (falling_back(), ("PENDING", 1)),
        ):
            created = await replicas[n % 2].post("/api/v1/tasks", json=body)
            assert created.status == 200, await created.text()
            expected[(await created.json())["task_id"]] = outcome
    store = app_of(replicas[0])[STORE]
    versions = {}
    for task_id in expected:
        stored = await store.get_result(task_id)
        assert stored is not None
        versions[task_id] = stored.version
    clock.advance(900)
    changed = await asyncio.gather(*(app_of(r)[SWEEPER].run_once() for r in replicas))
    assert sum(changed) == len(expected), changed
    for task_id, (state, current_slice) in expected.items():
        stored = await store.get_result(task_id)
        assert stored is not None
        assert (stored.state.name, stored.current_slice) == (state, current_slice), task_id
        assert stored.version == versions[task_id] + 1, f"{task_id} was written more than once"
    assert await asyncio.gather(*(app_of(r)[SWEEPER].run_once() for r in replicas)) == [0, 0]
