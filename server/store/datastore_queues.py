# mypy: disallow-untyped-calls=False
# (google-cloud-datastore leaves its functions unannotated; see datastore_client.)
"""Queue records in the Datastore backend, and the ones a store has read.

One Queue entity per queue key, never changed once recorded: `ensure` is a
transaction that writes it unless it exists, and a store keeps every queue
it has read. Every replica lists the queues every few seconds (to learn of
the ones others created), so `list` is a keys-only query plus lookups of
the queues this store has not read before. Functions here block:
DatastoreStore runs them in its worker threads, hence the lock.
"""

from __future__ import annotations

import threading
from typing import Any

from server.model import Queue
from server.store import codec
from server.store import datastore_client as dc


class KnownQueues:
    """The queues of one Datastore database that this store has read."""

    def __init__(self) -> None:
        self._queues: dict[str, Queue] = {}
        self._lock = threading.Lock()

    def ensure(self, client: Any, queue: Queue) -> bool:
        """Records a queue; returns True if it was not known before (across replicas)."""
        queue_key = dc.key(client, dc.QUEUE, queue.key)

        def work(tx: Any) -> bool:
            if client.get(queue_key, transaction=tx) is not None:
                return False
            unindexed = {"created_ts": float(queue.created_ts), "data": codec.dumps(queue)}
            tx.put(dc.make_entity(client, dc.QUEUE, queue.key, {}, unindexed))
            return True

        return dc.run_transaction(client, work)

    def list(self, client: Any) -> list[Queue]:
        """Every recorded queue, oldest first; only the ones not read before are looked up."""
        listed = dc.query(client, dc.QUEUE, keys_only=True).fetch()
        with self._lock:
            unknown = [e.key for e in listed if e.key.name not in self._queues]
        for start in range(0, len(unknown), dc.LOOKUP_BATCH):
            found = dc.get_multi(client, unknown[start : start + dc.LOOKUP_BATCH])
            with self._lock:
                self._queues.update((q.key, q) for q in (dc.load(Queue, e) for e in found.values()))
        with self._lock:
            queues = list(self._queues.values())
        return sorted(queues, key=lambda q: (q.created_ts, q.key))
