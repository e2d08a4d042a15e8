"""How a collected task's end becomes `drover`'s exit status (server/cli/follow.py)."""

from __future__ import annotations

import pytest

from server.cli.follow import exit_status, shell_status


@pytest.mark.parametrize(
    ("code", "status"),
    [(0, 0), (3, 3), (255, 255), (-9, 137), (-15, 143), (256, 1), (-1073741819, 1)],
)
def test_shell_status_never_turns_a_failure_into_success(code: int, status: int) -> None:
    """Exit codes map as a shell would, and codes outside 0-255 never become 0."""
    assert shell_status(code) == status


def test_completed_task_exits_with_its_code_silently(capsys: pytest.CaptureFixture[str]) -> None:
    """A COMPLETED task's exit code is the status, with nothing on stderr."""
    assert exit_status({"task_id": "t1", "state": "COMPLETED", "exit_code": "4"}) == 4
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            {"state": "TIMED_OUT", "io_timeout": True, "started_ts": "x", "exit_code": "-15"},
            "drover: task t1 ended TIMED_OUT (I/O timeout) with exit code -15\n",
        ),
        ({"state": "BOT_DIED"}, "drover: task t1 ended BOT_DIED\n"),
        (
            {"state": "NO_RESOURCE", "error": "no bot has os:Mac"},
            "drover: task t1 ended NO_RESOURCE: no bot has os:Mac\n",
        ),
    ],
)
def test_a_task_that_did_not_complete_exits_1_and_says_why(
    result: dict[str, object], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any other end is status 1 with the state, the timeout kind and the error."""
    assert exit_status({"task_id": "t1", **result}) == 1
    assert capsys.readouterr().err == message
