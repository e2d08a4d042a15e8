"""`drover config validate`: OK with the revision, or every problem and a non-zero status."""

from __future__ import annotations

import pathlib

import pytest

from server.config import loader
from server.config.cli import validate_command
from tests.config.conftest import PRODUCTION, QUICKSTART, WriteFile


@pytest.mark.parametrize("config_dir", [QUICKSTART, PRODUCTION], ids=["quickstart", "production"])
def test_shipped_configs_validate(
    config_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped config sets pass and the revision printed is the one the server would use."""
    assert validate_command(str(config_dir)) == 0
    out, err = capsys.readouterr()
    assert out == f"OK: revision {loader.read_config(config_dir).revision}\n"
    assert err == ""


def test_invalid_set_prints_every_problem(
    write: WriteFile, quickstart_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each problem goes to stderr as file:line: field: message, and the status is non-zero."""
    write("bots.cfg", 'bot_group {\n  auth { ip_allowlist: "nope" }\n}\n')
    write("settings.cfg", "\nmax_bot_sleep_time: 9999\n")
    assert validate_command(str(quickstart_dir)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith("bots.cfg:2: bot_group[0].auth[0].ip_allowlist[0]: 'nope' is not")
    assert lines[1] == (
        "settings.cfg:2: max_bot_sleep_time: 9999 is out of range 1..3600 (0 means the default, 60)"
    )
    assert lines[2] == f"{quickstart_dir}: 2 problem(s), config refused"


def test_missing_directory_is_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory without bots.cfg fails and says where it looked."""
    assert validate_command(str(tmp_path / "nowhere")) == 1
    assert f"bots.cfg:0: is missing (looked in {tmp_path / 'nowhere'})" in capsys.readouterr().err
