"""The frame of every bench script: its command line, its hard cap, its one JSON report.

A script builds its parser with `base_args`, fills in its defaults, and
hands its `main` coroutine to `run`, which raises the open-file limit,
samples the load average while `main` runs under `--max-secs`, and prints
one JSON document: `benchmark`, `versions`, `settings` (the resolved
command line and the server settings), `machine` (the load average before,
during and after) and `results` (what `main` returned).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from figures import Json, load_average

ROOT = Path(__file__).resolve().parent.parent
# How often the load average is sampled while a benchmark runs.
LOAD_SAMPLE_SECS = 2.0


def versions() -> Json:
    """Versions and machine facts every report starts with."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "drover": importlib.metadata.version("drover"),
        "drover_commit": commit,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


class LoadSampler:
    """Samples the one-minute load average every LOAD_SAMPLE_SECS while it runs."""

    def __init__(self) -> None:
        self.before = load_average()
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(LOAD_SAMPLE_SECS)
            self.samples.append(load_average())

    def start(self) -> None:
        """Starts sampling in the background."""
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        """Stops sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def summary(self) -> Json:
        """Before, during (mean and max) and after, and whether the figures are preliminary.

        Figures are preliminary when other work loaded the machine: more than
        half the cores busy before the benchmark started, or, during it, more
        than the benchmark's own processes (the server and the client, at most
        one core each) can explain.
        """
        cpus = os.cpu_count() or 1
        during = self.samples or [self.before]
        mean = round(sum(during) / len(during), 2)
        return {
            "load_1m_before": self.before,
            "load_1m_during_mean": mean,
            "load_1m_during_max": max(during),
            "load_1m_after": load_average(),
            "load_samples": len(self.samples),
            "preliminary": self.before > 0.5 * cpus or mean > cpus + 1,
        }


def base_args(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every bench script has."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--full", action="store_true", help="the issue's sizes (default: a short smoke run)"
    )
    parser.add_argument(
        "--max-secs", type=float, default=0.0, help="hard cap on the whole run, in seconds"
    )
    return parser


def raise_fd_limit() -> int:
    """Raises this process's open-file limit to its hard limit; returns it.

    Processes started afterwards (the server, client processes) inherit it:
    thousands of held polls are thousands of sockets on both sides.
    """
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def wait_until(predicate: Callable[[], bool], within: float, step: float = 0.005) -> bool:
    """Polls `predicate` until it holds or `within` seconds pass; returns whether it held."""
    deadline = time.perf_counter() + within
    while not predicate():
        if time.perf_counter() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


def run(
    name: str,
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, Json]],
    args: argparse.Namespace,
    server_settings: Mapping[str, Any],
) -> None:
    """Runs `main(args)` under `args.max_secs` and prints the report; exits 2 past the cap."""
    raise_fd_limit()

    async def capped() -> None:
        load = LoadSampler()
        load.start()
        try:
            results = await asyncio.wait_for(main(args), args.max_secs)
        finally:
            await load.stop()
        doc = {
            "benchmark": name,
            "versions": versions(),
            "settings": {**vars(args), "server_settings": dict(server_settings)},
            "machine": load.summary(),
            "results": results,
        }
        # default=str: paths among the settings.
        print(json.dumps(doc, indent=2, default=str), flush=True)

    try:
        asyncio.run(capped())
    except TimeoutError:
        print(f"{name} exceeded --max-secs {args.max_secs}", file=sys.stderr)
        sys.exit(2)
