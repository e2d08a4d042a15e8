"""Record helpers of the model (server/model.py)."""

from __future__ import annotations

import dataclasses

import pytest

from server.model import Bot, TaskResult, TaskState, evolve


def test_evolve_is_replace() -> None:
    """evolve makes the same record as dataclasses.replace and leaves the original alone."""
    result = TaskResult(
        task_id="10", state=TaskState.PENDING, created_ts=1.0, modified_ts=1.0, priority=5
    )
    changed = evolve(result, state=TaskState.RUNNING, bot_id="b1")
    assert changed == dataclasses.replace(result, state=TaskState.RUNNING, bot_id="b1")
    assert result.state is TaskState.PENDING


def test_evolve_refuses_unknown_fields() -> None:
    """A field the record does not have is a TypeError, as with dataclasses.replace."""
    with pytest.raises(TypeError, match="no field nope"):
        evolve(Bot(bot_id="b1"), nope=1)


def test_evolve_keeps_the_record_frozen() -> None:
    """The copy is as frozen as the original."""
    copy = evolve(Bot(bot_id="b1"), quarantined="disk")
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.quarantined = ""  # type: ignore[misc]
