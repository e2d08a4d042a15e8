"""Drover beside Celery, RQ and Dramatiq over Redis: the B1 drain and the B2 latency.

In one run: the B1 drain (bench/b1_throughput.py for Drover, each peer's
through bench/peer_runner.py), then B2 latency (bench/open_loop.py for
Drover), each in `--rounds` alternating rounds of Drover and the peers,
each figure the median of its rounds. Each peer figure is given with
Drover's ratio to it. bench/README.md ("How peers are measured") says what makes
them comparable.

What it installs when missing (and never into the project venv):
- Redis from the system's packages (`apt-get update`, `apt-get install -y
  redis-server`), started here as a private throwaway instance on a free
  loopback port without persistence, and stopped at the end;
- Celery (with its Redis transport), RQ, Dramatiq and redis-py into
  bench/.venv-peers, with that venv's pip.

    .venv/bin/python bench/peers.py [--full] [--peers celery rq dramatiq] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from b1_throughput import measure_drain
from figures import Json, merge_rounds, ratio
from open_loop import SETTINGS, measure_open_loop
from reports import base_args, run, sized
from server_process import free_port

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / ".venv-peers"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
PEER_PACKAGES = ["celery[redis]", "rq", "dramatiq[redis]", "redis"]
# Imported to check that the peers' venv is complete.
PEER_IMPORTS = "import celery, kombu.transport.redis, rq, dramatiq.brokers.redis, redis"
# How long Redis gets to answer PING after it is started.
REDIS_STARTUP_SECS = 20.0
# How long a stopped Redis gets to exit before it is killed.
REDIS_STOP_SECS = 10.0


def ensure_redis() -> str:
    """The path of redis-server, installing the system package when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("redis-server is missing: apt-get install -y redis-server (as root)")
    print("installing redis-server with apt-get ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["update", "-qq"], ["install", "-y", "-qq", "redis-server"]):
        subprocess.run(["apt-get", *command], check=True, env=env, stdout=subprocess.DEVNULL)
    found = shutil.which("redis-server")
    if not found:
        raise SystemExit("redis-server is still missing after apt-get install")
    return found


def ensure_peers_venv() -> None:
    """Creates bench/.venv-peers with the peers' packages unless it already imports them."""
    if PEERS_PYTHON.exists():
        check = subprocess.run([str(PEERS_PYTHON), "-c", PEER_IMPORTS], capture_output=True)
        if check.returncode == 0:
            return
    else:
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    print(f"installing {' '.join(PEER_PACKAGES)} into {PEERS_VENV} ...", file=sys.stderr)
    subprocess.run(
        [str(PEERS_PYTHON), "-m", "pip", "install", "-q", *PEER_PACKAGES],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(binary: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """Starts a private Redis on loopback without persistence; waits until it answers PING."""
    log = workdir / "redis.log"
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(workdir)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + REDIS_STARTUP_SECS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"redis-server exited: {log.read_text()[-2000:]}")
        if _answers_ping(port):
            return proc
        time.sleep(0.05)
    stop_redis(proc)
    raise SystemExit(f"redis-server did not answer PING within {REDIS_STARTUP_SECS} s")


def stop_redis(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after REDIS_STOP_SECS."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(REDIS_STOP_SECS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def run_peer(peer: str, redis_url: str, log: Path, *args: str) -> Json:
    """Runs bench/peer_runner.py for one peer in the peers' venv; returns its JSON."""
    proc = await asyncio.create_subprocess_exec(
        str(PEERS_PYTHON),
        str(HERE / "peer_runner.py"),
        "--peer",
        peer,
        "--redis-url",
        redis_url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BENCH_PEER_LOG": str(log)},
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{peer} {args}: exit {proc.returncode}: {err.decode()[-2000:]}")
    answer: Json = json.loads(out)
    return answer


def version_of(binary: str) -> str:
    """What `binary --version` says."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _p99s(rows: list[Json]) -> dict[float, float | None]:
    return {row["target_tasks_per_s"]: row["submit_to_start"].get("p99_ms") for row in rows}


async def peer_drain(peer: str, url: str, args: argparse.Namespace, log: Path) -> Json:
    """One peer's drain, as bench/peer_runner.py measures it, with the peer's version."""
    within = str(max(300.0, args.tasks / 20))
    return await run_peer(
        peer, url, log, "--mode", "drain", "--tasks", str(args.tasks), "--within", within
    )


def turns(round_number: int, peers: list[str]) -> list[str | None]:
    """Who is measured in which order in a round: None for Drover, then the peers.

    Every other round the peers go first, so neither side always runs last.
    """
    order: list[str | None] = [None, *peers]
    return order if round_number % 2 == 0 else order[::-1]


async def drain_rounds(
    args: argparse.Namespace, url: str, workdir: Path
) -> tuple[Json, dict[str, Json]]:
    """B1's drain on Drover and every peer in `args.rounds` alternating rounds, merged.

    Drover's figures, and each peer's version and figures: each number the
    median of its rounds (figures.merge_rounds), with the rounds' rates in
    `steady_tasks_per_s_by_round`. The machine's speed drifts by tens of
    percent within minutes; one drain each put that drift into the ratio.
    """
    drover_runs: list[Json] = []
    peer_runs: dict[str, list[Json]] = {peer: [] for peer in args.peers}
    versions: dict[str, str] = {}
    for n in range(args.rounds):
        for who in turns(n, args.peers):
            if who is None:
                drover_runs.append(await measure_drain(args.tasks, args.bots, claim=False))
                continue
            answer = await peer_drain(who, url, args, workdir / f"{who}.log")
            versions[who] = answer["version"]
            peer_runs[who].append(answer["result"])
    peers = {
        peer: {"version": versions[peer], "drain": _median_drain(runs)}
        for peer, runs in peer_runs.items()
    }
    return _median_drain(drover_runs), peers


def _median_drain(runs: list[Json]) -> Json:
    """One system's drains merged: each number the median of the rounds."""
    merged = merge_rounds([[one] for one in runs])[0]
    merged["steady_tasks_per_s_by_round"] = [one["steady_tasks_per_s"] for one in runs]
    return merged


async def latency_rounds(
    args: argparse.Namespace, url: str, workdir: Path
) -> tuple[Json, dict[str, list[Json]]]:
    """B2 for Drover and every peer in `args.rounds` alternating rounds, merged.

    Each round measures every rate on Drover and on each peer in turn
    (`turns`). A figure is the median of its rounds (figures.merge_rounds).
    """
    drover_rounds: list[Json] = []
    peer_rounds: dict[str, list[list[Json]]] = {peer: [] for peer in args.peers}
    rates = [str(r) for r in args.rates]
    for n in range(args.rounds):
        for who in turns(n, args.peers):
            if who is None:
                drover_rounds.append(
                    await measure_open_loop(args.rates, args.secs, args.latency_bots)
                )
                continue
            log = workdir / f"{who}.log"
            answer = await run_peer(
                who, url, log, "--mode", "latency", "--rates", *rates, "--secs", str(args.secs)
            )
            peer_rounds[who].append(answer["result"])
    errors: Counter[str] = Counter()
    for one in drover_rounds:
        errors.update(one["errors"])
    drover = {
        "bots": args.latency_bots,
        "rounds": args.rounds,
        "rates": merge_rounds([one["rates"] for one in drover_rounds]),
        "errors": dict(errors),
        "bot_failures": [f for one in drover_rounds for f in one["bot_failures"]][:3],
    }
    return drover, {peer: merge_rounds(rows) for peer, rows in peer_rounds.items()}


async def main(args: argparse.Namespace) -> Json:
    """Measures Drover and each peer; returns both with Drover's ratios to each peer."""
    redis_binary = ensure_redis()
    ensure_peers_venv()
    with tempfile.TemporaryDirectory(prefix="drover-peers-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        redis = start_redis(redis_binary, port, workdir)
        try:
            drain, peers = await drain_rounds(args, url, workdir)
            latency, peer_latency = await latency_rounds(args, url, workdir)
        finally:
            stop_redis(redis)
    drover_drain = drain["steady_tasks_per_s"]
    drover_p99 = _p99s(latency["rates"])
    for peer, figures in peers.items():
        figures["drover_drain_over_peer"] = ratio(
            drover_drain, figures["drain"]["steady_tasks_per_s"]
        )
        # Less sensitive to other work on the machine than tasks/s: the CPU
        # the one busy process (Drover's server, the peer's worker) spent
        # per task of the drain.
        figures["drover_cpu_per_task_over_peer"] = ratio(
            drain["server_cpu_ms_per_task"], figures["drain"]["worker_cpu_ms_per_task"]
        )
        figures["latency"] = peer_latency[peer]
        for row in figures["latency"]:
            row["drover_p99_over_peer_p99"] = ratio(
                drover_p99.get(row["target_tasks_per_s"]), row["submit_to_start"].get("p99_ms")
            )
    fastest = max((p["drain"]["steady_tasks_per_s"] for p in peers.values()), default=0)
    celery_p99 = _p99s(peers["celery"]["latency"]) if "celery" in peers else {}
    targets = {
        "b1_drain_at_least_fastest_peer": bool(fastest) and drover_drain >= fastest,
        "b1_fastest_peer_tasks_per_s": fastest,
        "b2_p99_no_worse_than_celery": {
            str(r): (drover_p99.get(r) or 1e9) <= p99 for r, p99 in celery_p99.items() if p99
        },
    }
    return {
        "redis": version_of(redis_binary),
        "peer_workers": "one process each: celery solo pool (acks_late, prefetch 1), "
        "rq SimpleWorker, dramatiq --processes 1 with its default 8 threads",
        "ratios": "drover / peer: drain > 1 means Drover is faster, p99 < 1 means lower, "
        "cpu_per_task < 1 means Drover's server spends less CPU per task than the peer's worker",
        "rounds": f"{args.rounds} rounds of the drains, then of the latencies, Drover and "
        "the peers alternating; each figure is the median of its rounds "
        "(steady_tasks_per_s_by_round and p99_ms_by_round list them)",
        "drover": {"drain": drain, "latency": latency},
        "peers": peers,
        "targets": targets,
    }


def parse_args() -> argparse.Namespace:
    """The command line, with the defaults of the chosen size filled in."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--tasks", type=int, default=0, help="drain size N")
    parser.add_argument("--bots", type=int, default=8, help="Drover bots in the drain")
    parser.add_argument("--latency-bots", type=int, default=20, help="Drover bots in B2")
    parser.add_argument("--rates", type=float, nargs="*", help="B2 submit rates, tasks/s")
    parser.add_argument("--secs", type=float, default=0.0, help="B2 time per rate")
    parser.add_argument(
        "--peers", nargs="*", default=["celery", "rq", "dramatiq"], help="which peers"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="alternating rounds of the drain and of B2 (Drover, then the peers)",
    )
    return sized(
        parser.parse_args(),
        tasks=(1_000, 20_000),
        rates=([200.0], [50.0, 100.0, 200.0]),
        secs=(3.0, 20.0),
        rounds=(1, 3),
        max_secs=(900.0, 3600.0),
    )


if __name__ == "__main__":
    run("peers", main, parse_args(), SETTINGS)
