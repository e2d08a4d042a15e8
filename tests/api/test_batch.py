"""Batch pause, resume, restart, reprioritize and retry by tag selector, with dry runs.

For each, the dry run lists exactly the tasks the real run then changes,
and only the tasks that the operation does change (already paused tasks
are not paused again, succeeded tasks are not retried, ...).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Transports
from tests.botapi.scripted import ScriptedBot, task_body


async def _task(api: Transports, tag: str, wait: bool = True) -> str:
    api.clock.advance(1)
    status, created = await api.fetch("POST", "/api/v1/tasks", task_body(tags=[tag], wait=wait))
    assert status == 200, created
    task_id: str = created["task_id"]
    return task_id


async def _result(api: Transports, task_id: str) -> dict[str, Any]:
    status, result = await api.fetch("GET", f"/api/v1/tasks/{task_id}")
    assert status == 200
    answer: dict[str, Any] = result
    return answer


async def _batch(api: Transports, verb: str, **body: Any) -> list[str]:
    """Runs a batch dry, then for real; asserts both list the same tasks; returns them."""
    status, dry = await api.fetch("POST", f"/api/v1/tasks:{verb}", {**body, "dry_run": True})
    assert status == 200, dry
    assert dry["dry_run"] is True
    status, real = await api.fetch("POST", f"/api/v1/tasks:{verb}", body)
    assert status == 200, real
    assert real["task_ids"] == dry["task_ids"]
    ids: list[str] = real["task_ids"]
    return ids


async def test_pause_and_resume_by_tag(both: Transports) -> None:
    """Pause takes the unpaused active tasks of the selector; resume takes the paused ones."""
    first, second, other = [await _task(both, t) for t in ("rev:1", "rev:1", "rev:2")]
    await both.fetch("POST", f"/api/v1/tasks/{first}:pause", {})
    assert await _batch(both, "pause", tags=["rev:1"]) == [second]
    assert [(await _result(both, t))["paused"] for t in (first, second, other)] == [
        True,
        True,
        False,
    ]
    assert await _batch(both, "resume", tags=["rev:1"]) == [second, first]
    assert not any([(await _result(both, t))["paused"] for t in (first, second)])
    assert await _batch(both, "resume", tags=["rev:1"]) == []


async def test_reprioritize_by_tag_changes_pending_tasks_of_another_priority(
    both: Transports,
) -> None:
    """Only pending tasks whose priority differs are listed and changed."""
    tasks = [await _task(both, "rev:4") for _ in range(2)]
    await both.fetch("POST", f"/api/v1/tasks/{tasks[0]}:reprioritize", {"priority": 9})
    assert await _batch(both, "reprioritize", tags=["rev:4"], priority=9) == [tasks[1]]
    assert {(await _result(both, t))["priority"] for t in tasks} == {9}
    status, answer = await both.fetch(
        "POST", "/api/v1/tasks:reprioritize", {"tags": ["rev:4"], "priority": 300}
    )
    assert status == 400
    assert "priority must be in 0..255" in answer["error"]["message"]


async def test_restart_by_tag_takes_running_tasks(both: Transports) -> None:
    """A running task is restarted as a new try; a pending one is not touched."""
    bot = ScriptedBot(both.http)
    await bot.handshake()
    running = await _task(both, "rev:5")
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.claim(run_id)
    pending = await _task(both, "rev:5")
    assert await _batch(both, "restart", tags=["rev:5"]) == [running]
    assert (await bot.update(run_id, b"x", 0))["must_stop"] is True
    await bot.update(run_id, exit_code=-15, duration=1.0)
    result = await _result(both, running)
    assert (result["state"], result["try_number"]) == ("PENDING", 1)
    assert (await _result(both, pending))["try_number"] == 0


async def test_retry_by_tag_reruns_failures_once(both: Transports) -> None:
    """Failed and canceled tasks rerun as new tasks; succeeded and rerun ones do not."""
    bot = ScriptedBot(both.http)
    await bot.handshake()
    outcomes = {}
    for exit_code in (0, 1):
        task_id = await _task(both, "rev:6")
        run_id = (await bot.poll())["manifest"]["task_id"]
        await bot.update(run_id, exit_code=exit_code, duration=1.0)
        outcomes[exit_code] = task_id
    canceled = await _task(both, "rev:6")
    await both.fetch("POST", f"/api/v1/tasks/{canceled}:cancel", {})
    status, dry = await both.fetch(
        "POST", "/api/v1/tasks:retry", {"tags": ["rev:6"], "dry_run": True}
    )
    assert dry["task_ids"] == [canceled, outcomes[1]]
    assert dry["new_task_ids"] == []
    status, real = await both.fetch("POST", "/api/v1/tasks:retry", {"tags": ["rev:6"]})
    assert status == 200
    assert real["task_ids"] == dry["task_ids"]
    for old, new in zip(real["task_ids"], real["new_task_ids"], strict=True):
        assert (await _result(both, new))["retry_of"] == old
    # A second batch does not rerun them again, nor the reruns (still pending).
    assert await _batch(both, "retry", tags=["rev:6"]) == []


@pytest.mark.parametrize("verb", ["pause", "resume", "restart", "retry", "cancel"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "tags: a batch operation needs at least one tag"),
        ({"tags": ["nocolon"]}, "tags: 'nocolon' is not of the form key:value"),
        ({"tags": ["a:b"], "limit": 5000}, "limit must be in 1..1000"),
    ],
)
async def test_a_bad_selector_is_400_and_changes_nothing(
    both: Transports, verb: str, body: dict[str, Any], message: str
) -> None:
    """Every batch refuses a missing or malformed selector or limit, naming it."""
    task_id = await _task(both, "a:b")
    status, answer = await both.fetch("POST", f"/api/v1/tasks:{verb}", body)
    assert status == 400
    assert message in answer["error"]["message"]
    result = await _result(both, task_id)
    assert (result["state"], result["paused"]) == ("PENDING", False)
