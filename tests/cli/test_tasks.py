"""`drover tasks`, `task`, `summary` and the task controls against a real server.

No bot runs here: tasks are created with --wait-for-capacity so that they stay
PENDING instead of ending NO_RESOURCE.
"""

from __future__ import annotations

import json

from tests.cli.conftest import Cli
from tests.e2e.conftest import DroverServer


def _pending(cli: Cli, *options: str) -> str:
    """Creates a task that stays pending; returns its ID."""
    run = cli("trigger", "--wait-for-capacity", *options, "--", "echo", "hi")
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_tasks_prints_a_table_newest_first(cli: Cli) -> None:
    """The list has a header row and one row per task, the newest on top."""
    older = _pending(cli, "--name", "older")
    newer = _pending(cli, "--name", "newer")
    lines = cli("tasks").stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATE", "BOT", "EXIT", "AGE"]
    assert [line.split()[:3] for line in lines[1:]] == [
        [newer, "newer", "PENDING"],
        [older, "older", "PENDING"],
    ]


def test_tasks_filters_by_state_and_tag(cli: Cli) -> None:
    """--state and --tag narrow the list to the matching tasks."""
    kept = _pending(cli, "--tag", "suite:unit")
    canceled = _pending(cli, "--tag", "suite:lint")
    cli("cancel", canceled)
    by_state = json.loads(cli("tasks", "--json", "--state", "canceled").stdout)
    assert [t["task_id"] for t in by_state["items"]] == [canceled]
    by_tag = json.loads(cli("tasks", "--json", "--tag", "suite:unit").stdout)
    assert [t["task_id"] for t in by_tag["items"]] == [kept]


def test_task_explains_why_it_is_pending(cli: Cli) -> None:
    """A pending task's details name the dimension no live bot has."""
    task_id = _pending(cli, "-d", "os=Nowhere")
    out = cli("task", task_id).stdout
    assert f"task:       {task_id}" in out
    assert "state:      PENDING" in out
    assert "why pending:" in out
    assert "os:Nowhere" in out.split("no live bot has:")[1].splitlines()[0]


def test_cancel_by_tag_dry_run_lists_what_the_real_run_cancels(
    drover: DroverServer, cli: Cli
) -> None:
    """The dry run lists exactly the tagged tasks, changes nothing, and the real run
    cancels that same list."""
    tagged = {_pending(cli, "--tag", "batch:7") for _ in range(3)}
    other = _pending(cli, "--tag", "batch:8")
    dry = cli("cancel", "--tag", "batch:7", "--dry-run")
    assert dry.returncode == 0
    assert set(dry.stdout.split()) == tagged
    assert "would cancel 3 task(s)" in dry.stderr
    assert {drover.result(t)["state"] for t in tagged} == {"PENDING"}
    real = cli("cancel", "--tag", "batch:7")
    assert sorted(real.stdout.split()) == sorted(dry.stdout.split())
    assert {drover.result(t)["state"] for t in tagged} == {"CANCELED"}
    assert drover.result(other)["state"] == "PENDING"


def test_cancel_by_tag_json_is_the_batch_answer(cli: Cli) -> None:
    """`cancel --tag --dry-run --json` prints the API's batch answer."""
    task_id = _pending(cli, "--tag", "batch:9")
    answer = json.loads(cli("cancel", "--json", "--tag", "batch:9", "--dry-run").stdout)
    assert answer == {"task_ids": [task_id], "dry_run": True, "new_task_ids": []}


def test_cancel_by_id_says_what_happened(drover: DroverServer, cli: Cli) -> None:
    """Canceling a pending task reports it canceled; a second cancel says it has ended."""
    task_id = _pending(cli)
    assert cli("cancel", task_id).stdout == f"{task_id}: canceled\n"
    assert drover.result(task_id)["state"] == "CANCELED"
    assert cli("cancel", task_id).stdout == f"{task_id}: not canceled (it has ended)\n"


def test_pause_resume_and_reprioritize_change_the_task(drover: DroverServer, cli: Cli) -> None:
    """pause, resume and reprioritize each show in the task's result."""
    task_id = _pending(cli)
    assert cli("pause", task_id).stdout == f"{task_id}: paused\n"
    assert drover.result(task_id)["paused"] is True
    assert cli("resume", task_id).stdout == f"{task_id}: resumed\n"
    assert drover.result(task_id)["paused"] is False
    assert cli("reprioritize", task_id, "17").stdout == f"{task_id}: priority 17\n"
    assert drover.result(task_id)["priority"] == 17


def test_retry_creates_a_new_task_from_an_ended_one(drover: DroverServer, cli: Cli) -> None:
    """`retry` prints the new task's ID, and that task records what it reran."""
    old = _pending(cli)
    cli("cancel", old)
    run = cli("retry", old)
    assert run.stdout.startswith(f"{old}: retried as ")
    new = run.stdout.split()[-1]
    assert new != old
    assert drover.result(new)["retry_of"] == old


def test_a_control_carries_on_past_a_failing_id_and_exits_1(cli: Cli) -> None:
    """One bad ID among several is reported in the JSON map without stopping the rest."""
    task_id = _pending(cli)
    run = cli("pause", "--json", "nope", task_id)
    assert run.returncode == 1
    answers = json.loads(run.stdout)
    assert answers["nope"]["error"]["code"] == "NOT_FOUND"
    assert answers[task_id]["changed"] is True
    assert "nope: No such task" in run.stderr


def test_conflicting_control_shows_the_servers_reason(cli: Cli) -> None:
    """Reprioritizing an ended task exits 1 with the server's explanation."""
    task_id = _pending(cli)
    cli("cancel", task_id)
    run = cli("reprioritize", task_id, "10")
    assert run.returncode == 1
    assert "is CANCELED, not PENDING" in run.stderr


def test_summary_counts_tasks_per_state(cli: Cli) -> None:
    """`summary` counts the selected tasks by state and says whether all are done."""
    _pending(cli, "--tag", "run:1")
    cli("cancel", _pending(cli, "--tag", "run:1"))
    _pending(cli, "--tag", "run:2")
    summary = json.loads(cli("summary", "--json", "--tag", "run:1").stdout)
    assert summary["total"] == "2"
    assert {s["state"]: s["count"] for s in summary["states"]} == {
        "PENDING": "1",
        "CANCELED": "1",
    }
    assert summary["all_done"] is False
    assert "all done: no" in cli("summary", "--tag", "run:1").stdout
