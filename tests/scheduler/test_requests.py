"""Validation of new task requests (server/scheduler/requests.py): pool and id rules."""

from __future__ import annotations

import dataclasses

import pytest

from server.errors import InvalidRequest
from server.model import TaskQuery, TaskRequest, TaskState
from server.scheduler import requests
from tests.scheduler.model_driver import Fleet, SimBot, SliceSpec, TaskSpec


def _with_dimensions(*pairs: tuple[str, str]) -> TaskRequest:
    """A valid request whose second slice requests `pairs` (the first is valid)."""
    spec = TaskSpec(priority=10, slices=(SliceSpec((), 60, True), SliceSpec((), 60, True)))
    draft = spec.draft()
    second = draft.slices[1]
    props = dataclasses.replace(second.properties, dimensions=list(pairs))
    return dataclasses.replace(
        draft, slices=[draft.slices[0], dataclasses.replace(second, properties=props)]
    )


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("os", "Linux")], "'pool' is required"),
        ([("pool", "a"), ("pool", "b")], "'pool' is required, with exactly one value"),
        ([("pool", "a|b")], "'pool' is required, with exactly one value"),
        ([("pool", "p"), ("id", "bot1"), ("id", "bot2")], "'id' takes at most one value"),
        ([("pool", "p"), ("id", "bot1|bot2")], "'id' takes at most one value, without '|'"),
        ([("pool", "p"), ("os", "")], "dimension 'os' value '' is empty"),
    ],
)
def test_dimension_rules_are_enforced_naming_slice_and_dimension(
    pairs: list[tuple[str, str]], message: str
) -> None:
    """A request breaking a dimension rule is refused with the slice and the dimension named."""
    with pytest.raises(InvalidRequest, match=r"task_slices\[1\]\.properties\.dimensions") as e:
        requests.validate(_with_dimensions(*pairs))
    assert message in e.value.detail


async def test_refused_request_stores_nothing(fleet: Fleet) -> None:
    """A request refused for its dimensions leaves no task and no queue behind."""
    queues = await fleet.store.list_queues()
    with pytest.raises(InvalidRequest):
        await fleet.tasks.create(_with_dimensions(("pool", "default"), ("id", "a|b")))
    assert (await fleet.store.list_tasks(TaskQuery(limit=10))).items == []
    assert await fleet.store.list_queues() == queues


async def test_id_dimension_pins_the_task_to_that_bot(fleet: Fleet) -> None:
    """A slice requesting `id` runs on that bot only: an identical bot never gets it, and
    a bot never seen makes it NO_RESOURCE."""
    pinned, other = SimBot(bot_id="bot1", os="Linux"), SimBot(bot_id="bot2", os="Linux")
    for bot in (pinned, other):
        await bot.handshake(fleet)
        assert (await bot.poll(fleet))["cmd"] == "sleep"
    spec = TaskSpec(priority=10, slices=(SliceSpec((("id", "bot1"),), 600, False),))
    _, created = await fleet.tasks.create(spec.draft())
    assert created.state is TaskState.PENDING
    assert (await other.poll(fleet))["cmd"] == "sleep"
    reply = await pinned.poll(fleet)
    assert reply["cmd"] == "run"
    assert reply["manifest"]["task_id"][:-1] == created.task_id[:-1]
    nobody = TaskSpec(priority=10, slices=(SliceSpec((("id", "bot9"),), 600, False),))
    _, lost = await fleet.tasks.create(nobody.draft())
    assert lost.state is TaskState.NO_RESOURCE
