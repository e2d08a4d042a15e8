"""Many simulated bots spread over several client processes (B3 and B5).

One asyncio process can hold thousands of polls, but a big fleet's
handshakes and poll answers then queue behind each other on its one event
loop, and the fleet's polls drift from the schedule a real fleet would
keep. `BotProcesses` splits the fleet over a few processes, each this
module run as a script: a `BotGroup` of its share of the bots, driven by
one-line commands on its stdin and answering with one JSON line on its
stdout:

- (at start) handshakes its bots, then prints `{"ready": ...}`;
- `poll SPREAD`: starts the bots' poll loops, spread over SPREAD seconds;
- `stats`: prints its counters (sim_bots.Fleet.counters) and its loop lag,
  the worst delay of a 100 ms timer since the last `stats`, which shows a
  saturated client;
- `stop`: stops the bots, prints its counters and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from figures import Json
from reports import run_loop
from server_process import PYTHON, http_session
from sim_bots import BotGroup, Fleet

HERE = Path(__file__).resolve().parent
# Bots per client process when the caller does not choose. One process was
# measured to keep 10,000 idle bots on schedule (bench/README.md, "B3: client
# processes"); two at that size halve the queue on each event loop without
# costing the server's two cores much more.
BOTS_PER_PROCESS = 5000
# Handshakes in flight per client process.
HANDSHAKE_CONCURRENCY = 50
# How long a client process gets for its handshakes, and to answer a command.
READY_SECS = 600.0
ANSWER_SECS = 60.0
# How often `wait_for` reads the counters.
CHECK_SECS = 1.0
LAG_TICK_SECS = 0.1


def processes_for(bots: int, procs: int = 0) -> int:
    """`procs` if given, else enough processes for BOTS_PER_PROCESS bots each."""
    return procs if procs > 0 else max(1, math.ceil(bots / BOTS_PER_PROCESS))


def add_counters(parts: Sequence[Json]) -> Json:
    """The counters of several client processes, added up (loop lag: the worst)."""
    total: Json = {"requests": collections.Counter(), "errors": collections.Counter()}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                total.setdefault(key, collections.Counter()).update(value)
            elif key.endswith("_max"):
                total[key] = max(total.get(key, 0.0), value)
            else:
                total[key] = total.get(key, 0) + value
    return {k: dict(v) if isinstance(v, collections.Counter) else v for k, v in total.items()}


class BotProcesses:
    """A fleet of simulated bots in `procs` client processes."""

    def __init__(
        self,
        url: str,
        version: str,
        bots: int,
        *,
        long_poll_secs: float,
        procs: int = 0,
        prefix: str = "bench-bot",
    ) -> None:
        self.url = url
        self.version = version
        self.bots = bots
        self.long_poll_secs = long_poll_secs
        self.procs = processes_for(bots, procs)
        self.prefix = prefix
        self.children: list[asyncio.subprocess.Process] = []

    async def start(self) -> Json:
        """Starts the client processes and waits until every bot has handshaken."""
        share, extra = divmod(self.bots, self.procs)
        first = 0
        for i in range(self.procs):
            count = share + (1 if i < extra else 0)
            command = [str(PYTHON), str(HERE / "bot_fleet.py"), "--url", self.url]
            command += ["--version", self.version, "--count", str(count), "--first", str(first)]
            command += ["--prefix", self.prefix, "--long-poll-secs", str(self.long_poll_secs)]
            first += count
            self.children.append(
                await asyncio.create_subprocess_exec(
                    *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
                )
            )
        readies = await asyncio.gather(*(self._answer(c, READY_SECS) for c in self.children))
        return {"procs": self.procs, "handshake_secs_max": max(r["ready"] for r in readies)}

    async def _answer(self, child: asyncio.subprocess.Process, within: float) -> Json:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), within)
        if not line:
            raise RuntimeError(f"client process {child.pid} exited with {await child.wait()}")
        answer: Json = json.loads(line)
        return answer

    async def _command(self, line: str) -> list[Json]:
        for child in self.children:
            assert child.stdin is not None
            child.stdin.write(f"{line}\n".encode())
            await child.stdin.drain()
        return list(await asyncio.gather(*(self._answer(c, ANSWER_SECS) for c in self.children)))

    async def poll(self, spread_secs: float) -> None:
        """Starts every bot's poll loop, the starts spread over `spread_secs`."""
        await self._command(f"poll {spread_secs}")

    async def stats(self) -> Json:
        """The fleet's counters now, added up over the client processes."""
        return add_counters(await self._command("stats"))

    async def wait_for(self, predicate: Callable[[Json], bool], within: float) -> Json:
        """Reads the counters every CHECK_SECS until `predicate(counters)` holds or
        `within` seconds pass; returns the last counters read."""
        stats = await self.stats()
        for _ in range(math.ceil(within / CHECK_SECS)):
            if predicate(stats):
                break
            await asyncio.sleep(CHECK_SECS)
            stats = await self.stats()
        return stats

    @property
    def pids(self) -> list[int]:
        """The client processes' IDs."""
        return [child.pid for child in self.children]

    async def stop(self) -> Json:
        """Stops the bots and the processes; returns the final counters."""
        live = [c for c in self.children if c.returncode is None]
        try:
            final = add_counters(await self._command("stop")) if live else {}
        except (RuntimeError, OSError, TimeoutError, ValueError) as e:
            # A client process that died early: report it, still reap the others.
            final = {"stop_error": repr(e)}
        finally:
            for child in live:
                try:
                    await asyncio.wait_for(child.wait(), ANSWER_SECS)
                except TimeoutError:
                    child.kill()
                    await child.wait()
        return final


# The client process.


class _LagMeter:
    """The worst lateness of a periodic timer: how long callbacks wait for the loop."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(LAG_TICK_SECS)
            self.worst = max(self.worst, time.perf_counter() - start - LAG_TICK_SECS)

    def take(self) -> float:
        """The worst lag since the last take, in ms."""
        worst, self.worst = self.worst, 0.0
        return round(1000 * worst, 1)


async def _child(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)

    def say(doc: Json) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    async with http_session() as http:
        fleet = Fleet(http, args.url, args.version, args.long_poll_secs)
        group = BotGroup(fleet, args.count, prefix=args.prefix, first=args.first)
        start = time.perf_counter()
        await group.handshake_all(HANDSHAKE_CONCURRENCY)
        say({"ready": round(time.perf_counter() - start, 3)})
        lag = _LagMeter()
        try:
            while line := (await commands.readline()).decode().split():
                if line[0] == "poll":
                    group.start(spread_secs=float(line[1]))
                    say({})
                elif line[0] == "stats":
                    say({**fleet.counters(), "bot_failures": len(group.failures())} | _lag(lag))
                elif line[0] == "stop":
                    failures = len(group.failures())
                    await group.stop()
                    say({**fleet.counters(), "bot_failures": failures} | _lag(lag))
                    return
        finally:
            lag.task.cancel()
            await group.stop()


def _lag(meter: _LagMeter) -> Json:
    return {"loop_lag_ms_max": meter.take()}


def main() -> None:
    """Runs one client process (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--prefix", default="bench-bot")
    parser.add_argument("--long-poll-secs", type=float, required=True)
    run_loop(_child(parser.parse_args()))


if __name__ == "__main__":
    main()
