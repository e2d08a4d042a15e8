"""Structured results end to end: a task on a real bot writes unit and lint results to
its results file; `drover trigger --collect` shows its output and exits with its code,
and the results read back through the API and `drover results`."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable

import pytest

from tests.cli.conftest import run_drover
from tests.e2e.conftest import BotProcess, DroverServer

pytestmark = pytest.mark.e2e

SCRIPT = """
import json, os, sys
with open(os.environ["DROVER_RESULTS_FILE"], "a") as f:
    f.write(json.dumps({"unit": [
        {"name": "test_ok", "result": "pass", "duration": 0.25, "namespace": "suite"},
        {"name": "test_bad", "result": "fail", "details": "expected 1, got 2"},
    ]}) + "\\n")
    f.write(json.dumps({"lint": [{"name": "unused import", "code": "F401",
        "severity": "warning", "path": "a.py", "line": 3, "char": 1}]}) + "\\n")
    f.write("this line is not JSON\\n")
    f.write(json.dumps({"work": "all checks ran"}))
print("checked 2 tests")
sys.exit(3)
"""


def test_a_tasks_unit_and_lint_results_show_through_the_api_and_the_cli(
    drover: DroverServer, start_bot: Callable[..., BotProcess]
) -> None:
    """`trigger --collect` prints the output and exits 3; results read back per task and tag."""
    start_bot("bot1")
    run = run_drover(
        "--server", drover.url, "trigger", "--collect", "--tag", "suite:e2e",
        "--", sys.executable, "-c", SCRIPT,
    )  # fmt: skip
    assert run.returncode == 3, run.stderr
    assert run.stdout == "checked 2 tests\n"
    match = re.search(r"task ([0-9a-f]+):", run.stderr)
    assert match, run.stderr
    task_id = match.group(1)

    results = drover.call("GET", f"/api/v1/tasks/{task_id}/results")
    assert [(u["name"], u["result"]) for u in results["unit"]] == [
        ("test_ok", "pass"),
        ("test_bad", "fail"),
    ]
    assert results["unit"][0]["duration"] == 0.25
    (lint,) = results["lint"]
    assert (lint["code"], lint["path"], lint["line"], lint["char"]) == ("F401", "a.py", 3, 1)
    messages = [w["message"] for w in results["work"]]
    assert messages[0].startswith("drover_bot: results file line 3: not JSON")
    assert messages[1] == "all checks ran"

    shown = run_drover("--server", drover.url, "results", task_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"task {task_id}: 2 unit (1 pass, 1 fail), 1 lint (1 warning), 2 work"
    assert any(line.split()[:2] == ["fail", "test_bad"] for line in lines)
    assert "expected 1, got 2" in shown.stdout
    assert any(line.split()[:3] == ["warning", "F401", "a.py:3:1"] for line in lines)
    by_tag = run_drover("--server", drover.url, "results", "--json", "--tag", "suite:e2e")
    assert json.loads(by_tag.stdout) == {"items": [results]}
