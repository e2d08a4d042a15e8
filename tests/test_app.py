"""The app factory's own duties: the state directory it creates."""

from __future__ import annotations

import logging
import pathlib

import pytest

from server.app import make_private_dir


def test_state_dir_is_created_for_its_owner_only(tmp_path: pathlib.Path) -> None:
    """A new state directory (it holds the keys) is readable by its owner alone."""
    state = tmp_path / "a" / "state"
    make_private_dir(state)
    assert state.stat().st_mode & 0o777 == 0o700


def test_open_state_dir_is_reported(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An existing state directory that others can read gets a warning naming it."""
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="drover.app"):
        make_private_dir(state)
    assert f"state directory {state} is open to other users (mode 755)" in caplog.text
