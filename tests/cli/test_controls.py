"""The controls by tag: `pause`, `resume`, `reprioritize` and `retry --tag`, with --dry-run.

No bot runs here: tasks are created with --wait-for-capacity so that they stay PENDING.
"""

from __future__ import annotations

import json

from tests.cli.conftest import Cli
from tests.e2e.conftest import DroverServer


def _pending(cli: Cli, *options: str) -> str:
    run = cli("trigger", "--wait-for-capacity", *options, "--", "echo", "hi")
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_pause_and_resume_by_tag_list_then_change_the_same_tasks(
    drover: DroverServer, cli: Cli
) -> None:
    """The dry run lists the tagged tasks and changes nothing; the real run changes those."""
    tagged = {_pending(cli, "--tag", "wave:1") for _ in range(2)}
    other = _pending(cli, "--tag", "wave:2")
    dry = cli("pause", "--tag", "wave:1", "--dry-run")
    assert set(dry.stdout.split()) == tagged
    assert "would pause 2 task(s)" in dry.stderr
    assert not any(drover.result(t)["paused"] for t in tagged)
    real = cli("pause", "--tag", "wave:1")
    assert sorted(real.stdout.split()) == sorted(dry.stdout.split())
    assert "paused 2 task(s)" in real.stderr
    assert all(drover.result(t)["paused"] for t in tagged)
    assert drover.result(other)["paused"] is False
    resumed = json.loads(cli("resume", "--json", "--tag", "wave:1").stdout)
    assert set(resumed["task_ids"]) == tagged


def test_reprioritize_takes_ids_or_a_tag_then_the_priority(drover: DroverServer, cli: Cli) -> None:
    """`reprioritize ID... N` and `reprioritize --tag T N` both set the priority."""
    first, second = _pending(cli, "--tag", "wave:3"), _pending(cli, "--tag", "wave:3")
    assert cli("reprioritize", first, second, "40").stdout == (
        f"{first}: priority 40\n{second}: priority 40\n"
    )
    run = cli("reprioritize", "--tag", "wave:3", "7")
    assert set(run.stdout.split()) == {first, second}
    assert {drover.result(t)["priority"] for t in (first, second)} == {7}
    bad = cli("reprioritize", "--tag", "wave:3", "urgent")
    assert bad.returncode == 2
    assert "the priority is a number (0-255), not 'urgent'" in bad.stderr


def test_retry_by_tag_prints_each_new_task(drover: DroverServer, cli: Cli) -> None:
    """Canceled tasks of the selector are rerun once; a second run reruns nothing."""
    old = _pending(cli, "--tag", "wave:4")
    cli("cancel", old)
    assert cli("retry", "--tag", "wave:4", "--dry-run").stdout == f"{old}\n"
    run = cli("retry", "--tag", "wave:4")
    assert run.stdout.startswith(f"{old}: retried as ")
    new = run.stdout.split()[-1]
    assert drover.result(new)["retry_of"] == old
    again = cli("retry", "--tag", "wave:4")
    assert again.stdout == ""
    assert "retried 0 task(s)" in again.stderr
