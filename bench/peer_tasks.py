"""The no-op tasks the peers benchmark runs on Celery, RQ or Dramatiq.

Imported by the peers' worker processes and by bench/peer_runner.py, both in
bench/.venv-peers (never in the project venv). `BENCH_PEER` names the peer
and `BENCH_REDIS_URL` the Redis they use. Two tasks:

- `noop(total)`: counts itself done in the worker's memory, and records in
  Redis the CLOCK_MONOTONIC time of the first and of the `total`-th
  completion, so a drain is timed from its first task to its last inside
  the worker, and the worker process's CPU time (`time.process_time()`, all
  its threads) at both, so the report can tell a slow peer from a peer
  starved of CPU. The count reaches Redis every PROGRESS_EVERY tasks and at
  the end: a no-op that made a Redis call of its own would cost a round
  trip per task that the framework's own acknowledgement already pays (a
  Drover bot's task_update is that acknowledgement). Every peer runs one
  worker process, so one process's count is the count.
- `stamp(sent)`: records `monotonic() - sent` as soon as it starts, `sent`
  being the producer's CLOCK_MONOTONIC time just before it enqueued: the
  submit-to-start latency, on one system-wide clock.

"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis  # type: ignore[import-not-found]  # only in bench/.venv-peers

PEER = os.environ.get("BENCH_PEER", "")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "bench"
DONE_KEY = "bench:done"
FIRST_KEY = "bench:t_first"
LAST_KEY = "bench:t_last"
FIRST_CPU_KEY = "bench:cpu_first"
LAST_CPU_KEY = "bench:cpu_last"
LATENCY_KEY = "bench:latency"
# How often (in tasks) a drain's progress reaches Redis.
PROGRESS_EVERY = 1000

_client: Any = None
# Dramatiq runs tasks on several threads of its one process.
_lock = threading.Lock()
_done = 0


def client() -> Any:
    """This process's Redis client (thread-safe: it pools connections)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(REDIS_URL)
    return _client


def record_done(total: int) -> None:
    """Counts one completed no-op; times the first and the last."""
    global _done
    with _lock:
        _done += 1
        done = _done
    if done == 1:
        client().set(FIRST_CPU_KEY, repr(time.process_time()))
        client().set(FIRST_KEY, repr(time.monotonic()))
    if done == total:
        client().set(LAST_KEY, repr(time.monotonic()))
        client().set(LAST_CPU_KEY, repr(time.process_time()))
    # Added, not set: Dramatiq's threads may report out of order.
    if done % PROGRESS_EVERY == 0:
        client().incrby(DONE_KEY, PROGRESS_EVERY)
    elif done == total:
        client().incrby(DONE_KEY, done % PROGRESS_EVERY)


def record_start(sent: float) -> None:
    """Records a task's submit-to-start latency in seconds."""
    client().rpush(LATENCY_KEY, repr(time.monotonic() - sent))


# RQ imports jobs by dotted path: plain functions are enough.


def rq_noop(total: int) -> None:
    """RQ's no-op."""
    record_done(total)


def rq_stamp(sent: float) -> None:
    """RQ's latency probe."""
    record_start(sent)


if PEER == "celery":
    from celery import Celery  # type: ignore[import-not-found]  # only in bench/.venv-peers

    app = Celery("peer_tasks", broker=REDIS_URL)
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name="bench.noop")  # type: ignore[untyped-decorator]
    def celery_noop(total: int) -> None:
        """Celery's no-op."""
        record_done(total)

    @app.task(name="bench.stamp")  # type: ignore[untyped-decorator]
    def celery_stamp(sent: float) -> None:
        """Celery's latency probe."""
        record_start(sent)

elif PEER == "dramatiq":
    import dramatiq  # type: ignore[import-not-found]  # only in bench/.venv-peers
    from dramatiq.brokers.redis import RedisBroker  # type: ignore[import-not-found]

    dramatiq.set_broker(RedisBroker(url=REDIS_URL))

    @dramatiq.actor(queue_name=QUEUE, max_retries=0)  # type: ignore[untyped-decorator]
    def dramatiq_noop(total: int) -> None:
        """Dramatiq's no-op."""
        record_done(total)

    @dramatiq.actor(queue_name=QUEUE, max_retries=0)  # type: ignore[untyped-decorator]
    def dramatiq_stamp(sent: float) -> None:
        """Dramatiq's latency probe."""
        record_start(sent)
