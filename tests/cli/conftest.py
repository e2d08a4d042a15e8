"""CLI fixtures: the end-to-end server and bots, and a runner for `drover` as a subprocess.

The CLI runs exactly as a user runs it (`python -m server ...`), against a real
`drover serve` process, with no DROVER_* variables leaking in from outside.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

import pytest

from tests.e2e.conftest import ROOT, DroverServer, drover, free_port, start_bot

__all__ = ["ROOT", "Cli", "drover", "free_port", "run_drover", "start_bot"]

Cli = Callable[..., subprocess.CompletedProcess[str]]


def run_drover(
    *args: str,
    env: Mapping[str, str] | None = None,
    unset: Sequence[str] = (),
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Runs `drover ARGS...` to completion and captures its output as text.

    `env` adds variables, `unset` removes some of the test's own.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_") and k not in unset}
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli(drover: DroverServer) -> Cli:
    """Runs `drover --server URL ARGS...` against the test server."""

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_drover("--server", drover.url, *args, timeout=timeout)

    return run
