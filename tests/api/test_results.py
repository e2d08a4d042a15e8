"""Structured results: unit and lint results and work messages, per task and per selector."""

from __future__ import annotations

from typing import Any

import pytest

from tests.botapi.scripted import task_body
from tests.conftest import ServerFactory

UNIT = {
    "name": "test_a",
    "result": "pass",
    "namespace": "suite",
    "engine": "pytest",
    "duration": 0.5,
    "path": "tests/test_a.py",
    "details": "ok",
}
LINT = {
    "name": "unused import",
    "code": "F401",
    "severity": "warning",
    "path": "a.py",
    "line": 3,
    "char": 1,
    "description": "os imported but unused",
}


async def test_results_are_appended_and_read_back(make_server: ServerFactory) -> None:
    """Reports add up in order, and read back per task and per tag selector."""
    client = await make_server()
    body = task_body(tags=["change:42"], wait=True)
    task_id = (await (await client.post("/api/v1/tasks", json=body)).json())["task_id"]
    first = await client.post(f"/api/v1/tasks/{task_id}/results", json={"unit": [UNIT]})
    assert first.status == 200, await first.text()
    await client.post(
        f"/api/v1/tasks/{task_id}/results", json={"lint": [LINT], "work": "linting done"}
    )
    results = await (await client.get(f"/api/v1/tasks/{task_id}/results")).json()
    assert results["unit"][0]["name"] == "test_a"
    assert results["unit"][0]["duration"] == 0.5
    assert results["lint"][0]["code"] == "F401"
    assert results["lint"][0]["line"] == 3
    assert [w["message"] for w in results["work"]] == ["linting done"]
    by_tag = await (await client.get("/api/v1/tasks:results?tags=change:42")).json()
    assert [r["task_id"] for r in by_tag["items"]] == [task_id]
    assert by_tag["items"][0]["unit"] == results["unit"]


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ({"unit": [{**UNIT, "result": "great"}]}, "unit[0].result"),
        ({"unit": [{**UNIT, "name": ""}]}, "unit[0].name"),
        ({"unit": [{**UNIT, "duration": -1}]}, "unit[0].duration"),
        ({"lint": [{**LINT, "severity": "fatal"}]}, "lint[0].severity"),
        ({"lint": [{**LINT, "code": ""}]}, "lint[0].code"),
        ({"unit": [{**UNIT, "bogus": 1}]}, "bogus"),
    ],
)
async def test_bad_results_are_refused_and_nothing_is_stored(
    make_server: ServerFactory, report: dict[str, Any], field: str
) -> None:
    """An invalid item refuses the whole report with a message naming it."""
    client = await make_server()
    body = task_body(wait=True)
    task_id = (await (await client.post("/api/v1/tasks", json=body)).json())["task_id"]
    resp = await client.post(f"/api/v1/tasks/{task_id}/results", json={"unit": [UNIT], **report})
    assert resp.status == 400
    assert field in (await resp.json())["error"]["message"]
    results = await (await client.get(f"/api/v1/tasks/{task_id}/results")).json()
    assert results["unit"] == []
    missing = await client.post("/api/v1/tasks/5f0000000000000/results", json={"unit": [UNIT]})
    assert missing.status == 404
