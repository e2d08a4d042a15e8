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
from figures import Json, load_average, system_busy_seconds, tree_cpu_seconds

from server.cli.serve import new_event_loop

ROOT = Path(__file__).resolve().parent.parent
# How often the load is sampled while a benchmark runs.
LOAD_SAMPLE_SECS = 2.0
# Other work using more cores than this on average (of the two the server
# and its client share) makes a run's figures preliminary.
PRELIMINARY_OTHER_CORES = 0.2


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
    """Samples the machine's load every LOAD_SAMPLE_SECS while a benchmark runs.

    Two readings: the one-minute load average, and the CPU that processes
    outside this benchmark use (all cores' busy time from /proc/stat minus
    that of this process and its descendants: the server, client processes,
    Redis and the peers' workers). The load average lags by a minute and
    counts the benchmark's own processes; the second reading does neither.
    CPU that a descendant used in the interval it exited in is counted as
    other work, a small overcount.
    """

    def __init__(self) -> None:
        self.before = load_average()
        self.samples: list[float] = []
        self.other_cores: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        pid = os.getpid()
        busy, mine, at = system_busy_seconds(), tree_cpu_seconds(pid), time.perf_counter()
        while True:
            await asyncio.sleep(LOAD_SAMPLE_SECS)
            self.samples.append(load_average())
            busy1, mine1, at1 = system_busy_seconds(), tree_cpu_seconds(pid), time.perf_counter()
            ours = sum(max(0.0, s - mine.get(p, 0.0)) for p, s in mine1.items())
            self.other_cores.append(max(0.0, (busy1 - busy - ours) / (at1 - at)))
            busy, mine, at = busy1, mine1, at1

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
        """The load before, during (mean and max) and after, and whether figures are preliminary.

        Figures are preliminary when other work took more than
        PRELIMINARY_OTHER_CORES on average while the benchmark ran.
        """
        during = self.samples or [self.before]
        others = self.other_cores or [0.0]
        other_mean = round(sum(others) / len(others), 2)
        return {
            "load_1m_before": self.before,
            "load_1m_during_mean": round(sum(during) / len(during), 2),
            "load_1m_during_max": max(during),
            "load_1m_after": load_average(),
            "load_samples": len(self.samples),
            "other_work_cores_mean": other_mean,
            "other_work_cores_max": round(max(others), 2),
            "preliminary": other_mean > PRELIMINARY_OTHER_CORES,
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


def sized(args: argparse.Namespace, **choices: tuple[Any, Any]) -> argparse.Namespace:
    """Fills each option left empty with its size: (smoke, --full) in `choices`."""
    for name, (smoke, full) in choices.items():
        if not getattr(args, name):
            setattr(args, name, full if args.full else smoke)
    return args


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


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Runs `main` to its end on the event loop `drover serve` runs on (uvloop where installed).

    The bench's clients and its in-process servers run on the server's loop:
    on asyncio's own loop the bots' side of B2 alone added about 0.15 ms to
    the median submit-to-start (bench/README.md, "How it got here").
    """
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main)


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
        run_loop(capped())
    except TimeoutError:
        print(f"{name} exceeded --max-secs {args.max_secs}", file=sys.stderr)
        sys.exit(2)
