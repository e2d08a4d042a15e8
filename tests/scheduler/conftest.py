"""Fixtures of the scheduler tests: the services wired as the server wires them."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from server.clock import FakeClock
from tests.scheduler.model_driver import Fleet


@pytest.fixture
async def fleet(tmp_path: pathlib.Path) -> AsyncIterator[Fleet]:
    """The scheduler services over a store in tmp_path, without HTTP; closed at teardown."""
    opened = await Fleet.open(tmp_path, FakeClock())
    yield opened
    await opened.close()
