"""Drover beside Celery, RQ and Dramatiq over Redis: the B1 drain and the B2 latency.

In one run: Drover's B1 drain (bench/b1_throughput.py) and B2 latency
(bench/b2_latency.py), then the same two measurements for each peer through
bench/peer_runner.py, each peer figure given with Drover's ratio to it.

What it installs when missing (and never into the project venv):
- Redis from the system's packages (`apt-get update`, `apt-get install -y
  redis-server`), started here as a private throwaway instance on a free
  loopback port without persistence, and stopped at the end;
- Celery (with its Redis transport), RQ, Dramatiq and redis-py into
  bench/.venv-peers.

    .venv/bin/python bench/peers.py [--full] [--peers celery rq dramatiq]
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
from pathlib import Path
from typing import Any

from b1_throughput import measure_drain
from b2_latency import measure_latency
from common import Json, base_args, emit, free_port, load_average, run

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / ".venv-peers"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
PEER_PACKAGES = ["celery[redis]", "rq", "dramatiq", "redis"]
# Imported to check that the peers' venv is complete.
PEER_IMPORTS = "import celery, kombu.transport.redis, rq, dramatiq, redis"


def ensure_redis() -> str:
    """The path of redis-server, installing the system package when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("redis-server is missing: apt-get install -y redis-server (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "redis-server"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
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
    subprocess.run(
        [str(PEERS_PYTHON), "-m", "pip", "install", "-q", *PEER_PACKAGES],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def start_redis(binary: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """Starts a private Redis without persistence; waits until it answers PING."""
    log = workdir / "redis.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"redis-server exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not answer PING within 20 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def run_peer(peer: str, redis_url: str, log: Path, *args: str) -> Any:
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
    return json.loads(out)


def version_of(binary: str) -> str:
    """What `binary --version` says."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def ratio(ours: float, theirs: float) -> float | None:
    """ours / theirs, rounded; None when either is missing."""
    if not ours or not theirs:
        return None
    return round(ours / theirs, 3)


async def main(args: argparse.Namespace) -> None:
    """Measures Drover and each peer, prints the comparison."""
    load0 = load_average()
    tasks = args.tasks or (20_000 if args.full else 1_000)
    rates = args.rates or ([50.0, 100.0, 200.0] if args.full else [200.0])
    secs = args.secs or (20.0 if args.full else 3.0)
    redis_binary = ensure_redis()
    ensure_peers_venv()

    drain = await measure_drain(tasks, args.bots, claim=False)
    latency = await measure_latency(rates, secs, args.latency_bots)
    drover_drain = drain["steady_tasks_per_s"]
    drover_p99 = {e["target_tasks_per_s"]: e["submit_to_start"].get("p99_ms") for e in latency}

    peers: dict[str, Json] = {}
    with tempfile.TemporaryDirectory(prefix="drover-peers-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        redis = start_redis(redis_binary, port, workdir)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            for peer in args.peers:
                log = workdir / f"{peer}.log"
                peer_drain = await run_peer(
                    peer, url, log, "--mode", "drain", "--tasks", str(tasks)
                )
                rates_args = [str(r) for r in rates]
                peer_latency = await run_peer(
                    peer, url, log, "--mode", "latency", "--rates", *rates_args, "--secs", str(secs)
                )
                steady = peer_drain["result"]["steady_tasks_per_s"]
                lat_rows = []
                for row in peer_latency["result"]:
                    p99 = row["submit_to_start"].get("p99_ms")
                    ours = drover_p99.get(row["target_tasks_per_s"])
                    lat_rows.append({**row, "drover_p99_over_peer_p99": ratio(ours or 0, p99)})
                peers[peer] = {
                    "version": peer_drain["version"],
                    "drain": peer_drain["result"],
                    "drover_drain_over_peer": ratio(drover_drain, steady),
                    "latency": lat_rows,
                }
        finally:
            stop(redis)
    redis_version = version_of(redis_binary)
    fastest = max((p["drain"]["steady_tasks_per_s"] for p in peers.values()), default=0)
    celery_p99 = {}
    if "celery" in peers:
        celery_p99 = {
            r["target_tasks_per_s"]: r["submit_to_start"].get("p99_ms")
            for r in peers["celery"]["latency"]
        }
    targets = {
        "b1_drain_at_least_fastest_peer": bool(fastest) and drover_drain >= fastest,
        "b1_fastest_peer_tasks_per_s": fastest,
        "b2_p99_no_worse_than_celery": {
            str(r): (drover_p99.get(r) or 1e9) <= p99 for r, p99 in celery_p99.items() if p99
        },
    }
    settings = {
        "full": args.full,
        "tasks": tasks,
        "drover_drain_bots": args.bots,
        "drover_latency_bots": args.latency_bots,
        "rates": rates,
        "secs_per_rate": secs,
        "peers": args.peers,
        "peer_workers": "one process each: celery solo pool (acks_late, prefetch 1), "
        "rq SimpleWorker, dramatiq --processes 1 with its default 8 threads",
        "redis": redis_version,
        "ratios": "drover / peer: drain > 1 means Drover is faster, p99 < 1 means lower",
    }
    results = {
        "drover": {"drain": drain, "latency": latency},
        "peers": peers,
        "targets": targets,
    }
    emit("peers", settings, results, load0)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = base_args(__doc__ or "")
    parser.add_argument("--tasks", type=int, default=0, help="drain size N")
    parser.add_argument("--bots", type=int, default=8, help="Drover bots in the drain")
    parser.add_argument("--latency-bots", type=int, default=20, help="Drover bots in B2")
    parser.add_argument("--rates", type=float, nargs="*", help="B2 submit rates, tasks/s")
    parser.add_argument("--secs", type=float, default=0.0, help="B2 time per rate")
    parser.add_argument(
        "--peers", nargs="*", default=["celery", "rq", "dramatiq"], help="which peers"
    )
    return parser.parse_args()


if __name__ == "__main__":
    run(main, parse_args())
