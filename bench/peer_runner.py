"""Runs one peer (Celery, RQ or Dramatiq) through the B1 drain or the B2 latency.

Run by bench/peers.py with bench/.venv-peers/bin/python, never directly in
the project venv; prints one JSON object. The Redis at --redis-url must be
a private, throwaway instance: it is flushed before each measurement.

Workers, one process each:
- Celery: `celery worker --pool=solo`, late acknowledgement, prefetch 1;
- RQ: `rq worker` with SimpleWorker (jobs run in the worker, no fork);
- Dramatiq: `dramatiq --processes 1` with its default worker threads (8).

Drain: N no-op tasks are enqueued, then the worker starts; the figure is
(N - 1) / (time of the last completion - time of the first), both read
inside the worker, so the worker's own start-up is not counted.
Latency: the worker is started and warmed up, then probes are enqueued on
a fixed schedule at each rate; each records its submit-to-start time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Standard library only, so importable here too: the same percentiles as Drover's.
from figures import latency_summary, per, rate

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
# How long a worker gets to exit after SIGTERM before it is killed.
STOP_SECS = 10.0
WARMUP_PROBES = 20
# How often the producer looks in Redis for the end of a measurement. Only
# when the end is noticed depends on it (the times are read in the worker),
# and on two shared cores a tighter loop would take CPU from the worker and Redis.
CHECK_SECS = 0.05


def worker_command(peer: str, redis_url: str) -> list[str]:
    """The command that starts one worker process of `peer`."""
    if peer == "celery":
        return [
            str(BIN / "celery"),
            "-A",
            "peer_tasks",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--prefetch-multiplier=1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
            "-Q",
            "bench",
        ]
    if peer == "rq":
        return [
            str(BIN / "rq"),
            "worker",
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--url",
            redis_url,
            "--quiet",
            "bench",
        ]
    if peer == "dramatiq":
        return [str(BIN / "dramatiq"), "peer_tasks", "--processes", "1"]
    raise SystemExit(f"unknown peer {peer!r}")


class Peer:
    """A peer's producer side and its worker process."""

    def __init__(self, peer: str, redis_url: str) -> None:
        os.environ["BENCH_PEER"] = peer
        os.environ["BENCH_REDIS_URL"] = redis_url
        sys.path.insert(0, str(HERE))
        import peer_tasks

        self.name = peer
        self.redis_url = redis_url
        self.tasks = peer_tasks
        self.redis = peer_tasks.client()
        self.worker: subprocess.Popen[bytes] | None = None
        self._send_noop, self._send_stamp = self._senders()

    def _senders(self) -> tuple[Any, Any]:
        t = self.tasks
        if self.name == "celery":
            return t.celery_noop.delay, t.celery_stamp.delay
        if self.name == "dramatiq":
            return t.dramatiq_noop.send, t.dramatiq_stamp.send
        from rq import Queue  # type: ignore[import-not-found]  # only in bench/.venv-peers

        queue = Queue(t.QUEUE, connection=self.redis)
        return (
            lambda total: queue.enqueue("peer_tasks.rq_noop", total),
            lambda sent: queue.enqueue("peer_tasks.rq_stamp", sent),
        )

    def start_worker(self) -> None:
        """Starts the worker process (its output goes to a log beside the caller's)."""
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        with open(os.environ.get("BENCH_PEER_LOG", os.devnull), "ab") as log:
            self.worker = subprocess.Popen(
                worker_command(self.name, self.redis_url),
                cwd=HERE,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def stop_worker(self) -> None:
        """SIGTERM, then SIGKILL after STOP_SECS."""
        if self.worker is None or self.worker.poll() is not None:
            return
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(STOP_SECS)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()

    def wait_for(self, predicate: Any, within: float) -> bool:
        """Polls `predicate` every CHECK_SECS until it holds or `within` seconds pass."""
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                return False
            if self.worker is not None and self.worker.poll() is not None:
                raise SystemExit(f"the {self.name} worker exited with {self.worker.returncode}")
            time.sleep(CHECK_SECS)
        return True

    def drain(self, tasks: int, within: float) -> dict[str, Any]:
        """Enqueues `tasks` no-ops, starts the worker, times the drain."""
        t = self.tasks
        self.redis.flushdb()
        start = time.monotonic()
        for _ in range(tasks):
            self._send_noop(tasks)
        enqueue_secs = time.monotonic() - start
        self.start_worker()
        try:
            finished = self.wait_for(lambda: self.redis.get(t.LAST_KEY) is not None, within)
        finally:
            self.stop_worker()
        done = int(self.redis.get(t.DONE_KEY) or 0)
        first, last, cpu_first, cpu_last = (
            float(self.redis.get(key) or 0)
            for key in (t.FIRST_KEY, t.LAST_KEY, t.FIRST_CPU_KEY, t.LAST_CPU_KEY)
        )
        return {
            "tasks": tasks,
            "finished": finished,
            "completed": done,
            "enqueue_per_s": rate(tasks, enqueue_secs),
            "steady_tasks_per_s": rate(done - 1, last - first),
            # The worker's own CPU over the same interval (Redis's is not counted).
            "worker_cpu_ms_per_task": per(cpu_last - cpu_first, done - 1, 1000),
            "worker_cpu_busy": per(cpu_last - cpu_first, last - first),
        }

    def latency(self, rates: list[float], secs: float) -> list[dict[str, Any]]:
        """Submit-to-start latency at each rate, worker warm."""
        self.redis.flushdb()
        self.start_worker()
        out = []
        try:
            self._probe(50.0, WARMUP_PROBES)
            for target in rates:
                time.sleep(0.5)
                out.append(
                    {"target_tasks_per_s": target, **self._probe(target, int(target * secs))}
                )
        finally:
            self.stop_worker()
        return out

    def _probe(self, target: float, count: int) -> dict[str, Any]:
        key = self.tasks.LATENCY_KEY
        self.redis.delete(key)
        start = time.monotonic()
        lag = 0.0
        for i in range(count):
            due = start + i / target
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                lag = max(lag, now - due)
            self._send_stamp(time.monotonic())
        ended = time.monotonic()
        self.wait_for(lambda: self.redis.llen(key) >= count, within=max(30.0, count / 50))
        latencies = [float(v) for v in self.redis.lrange(key, 0, -1)]
        return {
            "tasks": count,
            "submitted_per_s": rate(count, ended - start),
            "submit_lag_max_ms": round(1000 * lag, 3),
            "submit_to_start": latency_summary(latencies),
        }


def main() -> None:
    """Parses the command line, runs one measurement, prints its JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peer", required=True, choices=["celery", "rq", "dramatiq"])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--mode", required=True, choices=["drain", "latency"])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rates", type=float, nargs="*", default=[200.0])
    parser.add_argument("--secs", type=float, default=3.0)
    parser.add_argument("--within", type=float, default=300.0, help="hard cap, seconds")
    args = parser.parse_args()
    peer = Peer(args.peer, args.redis_url)
    versions = {"peer": args.peer, "version": _version(args.peer)}
    if args.mode == "drain":
        result: Any = peer.drain(args.tasks, args.within)
    else:
        result = peer.latency(args.rates, args.secs)
    print(json.dumps({**versions, "result": result}))


def _version(peer: str) -> str:
    from importlib.metadata import version

    return version(peer)


if __name__ == "__main__":
    main()
