"""Fixtures for the config tests: private copies of the shipped config sets."""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Callable

import pytest

from server.config import loader
from server.config.validation import Problem

ROOT = pathlib.Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs"
PRODUCTION = ROOT / "configs" / "examples" / "production"

# Writes `text` to a file of the config set (relative name) and returns its path.
WriteFile = Callable[[str, str], pathlib.Path]


@pytest.fixture
def quickstart_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A private copy of the quickstart configs (without the examples)."""
    target = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, target, ignore=shutil.ignore_patterns("examples"))
    return target


@pytest.fixture
def production_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A private copy of the production-style example set."""
    target = tmp_path / "production"
    shutil.copytree(PRODUCTION, target)
    return target


@pytest.fixture
def write(quickstart_dir: pathlib.Path) -> WriteFile:
    """Overwrites a file of the quickstart copy."""

    def write_file(name: str, text: str) -> pathlib.Path:
        path = quickstart_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write_file


def problems_in(config_dir: pathlib.Path) -> list[Problem]:
    """All problems of a directory, as the server and the CLI see them."""
    return loader.check(loader.read_config(config_dir))


def only_problem(config_dir: pathlib.Path) -> Problem:
    """The single problem of a directory; fails when there are none or several."""
    problems = problems_in(config_dir)
    assert len(problems) == 1, problems
    return problems[0]
