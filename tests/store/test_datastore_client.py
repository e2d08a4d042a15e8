# mypy: disallow-untyped-calls=False
# (google.api_core leaves its exceptions' constructors unannotated.)
"""The Datastore backend's shared helpers: contention retries, sortable timestamps.

No emulator here: the retry loop is driven by a scripted stand-in for the
client's transactions, the edge where Datastore reports contention.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from google.api_core import exceptions as api_errors

from server import errors
from server.store import datastore_client
from server.store.datastore_client import Contention, retry_write, run_transaction, sortable
from tests.store import datastore_emulator


class ScriptedTransaction:
    """Commits fail with the next scripted error, then succeed."""

    def __init__(self, client: ScriptedClient) -> None:
        self._client = client

    def commit(self) -> None:
        self._client.commits += 1
        if self._client.failures:
            raise self._client.failures.pop(0)

    def rollback(self) -> None:
        self._client.rollbacks += 1


class ScriptedClient:
    """Hands out ScriptedTransactions whose commits fail as `failures` says."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.commits = 0
        self.rollbacks = 0

    def transaction(self, begin_later: bool = False) -> ScriptedTransaction:
        return ScriptedTransaction(self)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries happen at once: these tests are about how many, not when."""
    monkeypatch.setattr(datastore_client, "BACKOFF_BASE_SECS", 0.0)


def test_contention_runs_the_work_again() -> None:
    """A commit aborted by contention runs the whole work again, then commits."""
    client = ScriptedClient(api_errors.Aborted("contention"), api_errors.Conflict("409"))
    runs: list[Any] = []

    def work(tx: Any) -> str:
        runs.append(tx)
        return "done"

    assert run_transaction(client, work) == "done"
    assert (len(runs), client.commits) == (3, 3)
    assert len(set(map(id, runs))) == 3


def test_persistent_contention_is_unavailable() -> None:
    """After ATTEMPTS collisions the transaction gives up with Contention, a 503."""
    client = ScriptedClient(*[api_errors.Aborted("hot")] * datastore_client.ATTEMPTS)
    with pytest.raises(Contention) as caught:
        run_transaction(client, lambda tx: None)
    assert isinstance(caught.value, errors.Unavailable)
    assert client.commits == datastore_client.ATTEMPTS


def test_other_errors_are_not_retried() -> None:
    """An error that may have committed (or is not contention) propagates at once."""
    for error in [api_errors.DeadlineExceeded("slow"), api_errors.AlreadyExists("dup")]:
        client = ScriptedClient(error)
        with pytest.raises(type(error)):
            run_transaction(client, lambda tx: None)
        assert client.commits == 1


def test_work_errors_roll_back_and_propagate() -> None:
    """An exception from the work rolls the transaction back and is not retried."""
    client = ScriptedClient()

    def work(tx: Any) -> None:
        raise errors.Conflict("no")

    with pytest.raises(errors.Conflict):
        run_transaction(client, work)
    assert (client.commits, client.rollbacks) == (0, 1)


def test_retry_write_repeats_only_on_contention() -> None:
    """An idempotent write is repeated after contention, not after other errors."""
    calls: list[int] = []
    failures: list[Exception] = [api_errors.Aborted("hot")]

    def write() -> int:
        calls.append(1)
        if failures:
            raise failures.pop()
        return len(calls)

    assert retry_write(write) == 2
    failures.append(api_errors.InvalidArgument("bad"))
    with pytest.raises(api_errors.InvalidArgument):
        retry_write(write)
    assert len(calls) == 3


def test_transient_errors_become_unavailable() -> None:
    """Datastore's transient failures reach callers as errors.Unavailable."""

    def call() -> None:
        raise api_errors.ServiceUnavailable("down")

    with pytest.raises(errors.Unavailable, match="down"):
        datastore_client.translate_errors(call)


def test_sortable_keeps_numeric_order() -> None:
    """The text form of timestamps sorts like the numbers, negatives and fractions included."""
    rng = random.Random(7)
    values = [0.0, -0.0, 1.0, -1.0, 1e-9, 1_700_000_000.5, 1_700_000_000.25, -3e10]
    values += [rng.uniform(-1e10, 1e10) for _ in range(200)]
    assert sorted(values, key=sortable) == sorted(values)
    assert all(len(sortable(v)) == 16 for v in values)


def test_missing_emulator_jar_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the emulator's jar the tests fail saying what to install, never skip."""
    monkeypatch.setenv(datastore_emulator.JAR_ENV, "/nonexistent/CloudDatastore.jar")
    with pytest.raises(datastore_emulator.EmulatorUnavailable, match="not a file"):
        datastore_emulator.find_jar()
    monkeypatch.delenv(datastore_emulator.JAR_ENV)
    monkeypatch.setattr(datastore_emulator, "SDK_ROOTS", [])
    monkeypatch.setenv("PATH", "")
    with pytest.raises(datastore_emulator.EmulatorUnavailable, match="install"):
        datastore_emulator.find_jar()
    with pytest.raises(datastore_emulator.EmulatorUnavailable, match="java"):
        datastore_emulator.find_java()
