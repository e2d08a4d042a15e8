"""The operations tests/scheduler/test_properties.py draws, and their hypothesis strategies.

Each operation is a frozen dataclass naming what to do, not to whom: its
indices pick among the bots or tasks present when the step runs
(tests/scheduler/property_driver.py applies them).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import strategies as st

from tests.scheduler.model_driver import SliceSpec, TaskSpec

# task_update bodies, in the shapes PROTOCOL.md 0.2.7 U4 lists (and two edge ones).
UPDATE_KINDS: dict[str, dict[str, Any]] = {
    "ping": {},
    "exit_0": {
        "exit_code": 0,
        "duration": 2.5,
        "bot_overhead": 0.1,
        "io_timeout": False,
        "hard_timeout": False,
    },
    "exit_1": {"exit_code": 1, "duration": 3.0},
    "hard_timeout": {"exit_code": -15, "duration": 60.0, "hard_timeout": True},
    # A true flag alone is a completion (U3) ...
    "io_timeout_flag": {"io_timeout": True},
    # ... false flags without an exit code are not (the internal-failure final).
    "false_flags": {"io_timeout": False, "hard_timeout": False},
    "canceled": {"canceled": True},
}

# Requested dimensions besides the pool: bots are os:Linux or os:Mac, bot1
# exists whenever there are two bots or more, and nobody runs Windows.
DIMENSION_VARIANTS: list[tuple[tuple[str, str], ...]] = [
    (("os", "Linux"),),
    (("os", "Mac"),),
    (("os", "Linux|Mac"),),
    (),
    (("os", "Windows"),),
    (("id", "bot1"),),
]

slice_specs = st.builds(
    SliceSpec,
    dimensions=st.sampled_from(DIMENSION_VARIANTS),
    expiration_secs=st.sampled_from([60, 300, 900, 1800]),
    wait_for_capacity=st.sampled_from([True, True, True, False]),
)
task_specs = st.builds(
    TaskSpec,
    priority=st.sampled_from([10, 20, 30]),
    slices=st.lists(slice_specs, min_size=1, max_size=3).map(tuple),
    max_retries=st.sampled_from([0, 1]),
    bot_ping_tolerance_secs=st.sampled_from([60, 600]),
)


# Operations. Indices pick among the bots or tasks present when the step runs.


@dataclasses.dataclass(frozen=True)
class Create:
    """A client creates a task."""

    spec: TaskSpec


@dataclasses.dataclass(frozen=True)
class BotStep:
    """Bot `bot` acts: see Driver.bot_step for what each action does in each bot state."""

    bot: int
    action: str
    output: bool = False
    pick: int = 0


@dataclasses.dataclass(frozen=True)
class Cancel:
    """A client cancels a task, preferably one in `state`."""

    task: int
    state: str
    kill_running: bool


@dataclasses.dataclass(frozen=True)
class Restart:
    """A client restarts a task, preferably one in `state`."""

    task: int
    state: str


@dataclasses.dataclass(frozen=True)
class Pause:
    """A client pauses (or resumes) a task, preferably one in `state`."""

    task: int
    state: str
    resume: bool


@dataclasses.dataclass(frozen=True)
class Reprioritize:
    """A client changes a task's priority, preferably one in `state`."""

    task: int
    state: str
    priority: int


@dataclasses.dataclass(frozen=True)
class Advance:
    """Time passes, then the sweeper runs."""

    seconds: int


@dataclasses.dataclass(frozen=True)
class ToDeadline:
    """The clock jumps to a task's next deadline (or a second before), maybe sweeping."""

    pick: int
    offset: int
    sweep: bool


Operation = Create | BotStep | Cancel | Restart | Pause | Reprioritize | Advance | ToDeadline

# A bot's actions, weighted by repetition: mostly work on the run it holds.
BOT_ACTIONS = [
    "poll",
    "poll",
    "claim",
    "claim",
    "claim_again",
    *[f"update:{kind}" for kind in UPDATE_KINDS],
    "update:ping",
    "update:ping",
    "update:exit_0",
    "task_error",
    "task_error:client",
    "die",
    "stale",
    "stale",
]
STALE_ACTIONS = [*sorted(UPDATE_KINDS), "task_error", "claim"]
# Which tasks a client acts on: mostly running ones, where it matters most.
TARGET_STATES = ["RUNNING", "RUNNING", "PENDING", "any"]
picks = st.integers(0, 63)

OPERATIONS: dict[str, st.SearchStrategy[Operation]] = {
    "create": st.builds(Create, spec=task_specs),
    "bot": st.builds(
        BotStep,
        bot=picks,
        action=st.sampled_from(BOT_ACTIONS),
        output=st.booleans(),
        pick=picks,
    ),
    "cancel": st.builds(
        Cancel, task=picks, state=st.sampled_from(TARGET_STATES), kill_running=st.booleans()
    ),
    "restart": st.builds(Restart, task=picks, state=st.sampled_from(TARGET_STATES)),
    "pause": st.builds(
        Pause, task=picks, state=st.sampled_from(TARGET_STATES), resume=st.booleans()
    ),
    "reprioritize": st.builds(
        Reprioritize,
        task=picks,
        state=st.sampled_from(["PENDING", "PENDING", "any"]),
        priority=st.sampled_from([5, 10, 20, 30]),
    ),
    # Mostly short steps, so runs live long enough to be updated; sometimes long ones.
    "advance": st.builds(Advance, seconds=st.one_of(st.integers(0, 90), st.integers(0, 2000))),
    "deadline": st.builds(
        ToDeadline, pick=picks, offset=st.sampled_from([-1, 0]), sweep=st.booleans()
    ),
}
OPERATION_WEIGHTS = ["bot"] * 10 + ["create"] * 2 + ["cancel", "restart"] + ["advance"] * 3
OPERATION_WEIGHTS += ["pause", "reprioritize"]
OPERATION_WEIGHTS += ["deadline"] * 2
operations = st.sampled_from(OPERATION_WEIGHTS).flatmap(lambda kind: OPERATIONS[kind])
