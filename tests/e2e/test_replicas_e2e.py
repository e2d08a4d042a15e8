"""Two `drover serve` replicas on one Datastore (the emulator), real bots on both.

Each replica is its own process with its own copy of the configs, its own
state directory and port, and `--store datastore` on one emulator
namespace: they share nothing but the Store (DESIGN.md 7). Bots download
their code from one replica and only ever talk to it; tasks are created
through both. Every task must run exactly once, as its first try, on a
bot of either replica, and end COMPLETED; a poll held on one replica must
be answered for a task created on the other, well before its hold ends;
a session minted by one replica must be accepted by the other.
"""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import (
    E2E_SETTINGS,
    BotProcess,
    DroverServer,
    copy_configs,
    launch_bot,
    launch_server,
    stop_bot,
    stop_server,
    wait_for,
)
from tests.store.datastore_emulator import Emulator, new_namespace

pytestmark = [pytest.mark.e2e, pytest.mark.datastore]

BOTS_PER_REPLICA = 10
# Each task costs its bot a task-runner process (about 0.15 s of CPU), which
# is most of what this test costs: this many keep it well under a minute.
TASKS = 200
# Parallel API clients creating the tasks, spread over both replicas.
CREATORS = 8
# Far beyond what the tasks need (they append a line to a file), so that a
# lost or stuck task fails the test instead of slowing it down forever.
DONE_TIMEOUT_SECS = 90
# How often a replica re-checks the Store for what the other one did.
RECHECK_SECS = "0.5"
# A held poll on one replica must be answered well before this, for a task
# created on the other.
HOLD_SECS = 20

# Starts two replicas on one fresh namespace, with these settings.cfg contents.
ReplicaPair = Callable[[str], tuple[DroverServer, DroverServer]]


@pytest.fixture
def replicas(datastore_emulator: Emulator, tmp_path: pathlib.Path) -> Iterator[ReplicaPair]:
    """Starts pairs of `drover serve --store datastore` processes; stops them at teardown."""
    started: list[DroverServer] = []

    def start(settings: str) -> tuple[DroverServer, DroverServer]:
        namespace = new_namespace()
        pair = []
        for name in ("a", "b"):
            workdir = tmp_path / f"replica-{name}"
            server = launch_server(
                workdir,
                copy_configs(workdir / "configs", settings),
                "--store",
                "datastore",
                "--datastore-project",
                datastore_emulator.project,
                "--datastore-namespace",
                namespace,
                "--recheck-secs",
                RECHECK_SECS,
                env={"DATASTORE_EMULATOR_HOST": datastore_emulator.host},
            )
            started.append(server)
            pair.append(server)
        return pair[0], pair[1]

    yield start
    for server in started:
        stop_server(server)


@pytest.fixture
def bots(tmp_path: pathlib.Path) -> Iterator[Callable[[DroverServer, str], BotProcess]]:
    """Starts real bots against a given replica; stops them all at teardown."""
    started: list[BotProcess] = []

    def start(server: DroverServer, bot_id: str) -> BotProcess:
        bot = launch_bot(server, bot_id, tmp_path / "bots" / bot_id)
        started.append(bot)
        return bot

    yield start
    for bot in started:
        stop_bot(bot)


def connected(server: DroverServer, bot_ids: list[str]) -> bool:
    """True once every one of the bots has polled (the server lists it)."""
    page = server.call("GET", "/api/v1/bots?limit=1000")
    return {bot["bot_id"] for bot in page.get("items", [])} >= set(bot_ids)


def test_replicas_run_every_task_exactly_once(
    replicas: ReplicaPair,
    bots: Callable[[DroverServer, str], BotProcess],
    tmp_path: pathlib.Path,
) -> None:
    """200 tasks created through two replicas run once each on 20 bots split across them."""
    a, b = replicas(E2E_SETTINGS)
    # The same config files, copied to two places: one revision everywhere.
    assert (
        a.call("GET", "/api/v1/server")["config_revision"]
        == (b.call("GET", "/api/v1/server")["config_revision"])
    )
    fleet = {a: [f"a{i:02}" for i in range(BOTS_PER_REPLICA)]}
    fleet[b] = [f"b{i:02}" for i in range(BOTS_PER_REPLICA)]
    for server, bot_ids in fleet.items():
        for bot_id in bot_ids:
            bots(server, bot_id)
    every_bot = fleet[a] + fleet[b]
    # Each replica sees the bots of the other: the Store is all they share.
    wait_for(lambda: connected(a, every_bot) and connected(b, every_bot), 60, "the bots")

    runs_log = tmp_path / "runs.log"
    tag = f"run:{uuid.uuid4().hex}"
    # Each execution appends "<run ID> <bot ID>": a line per run, whoever ran it.
    command = ["/bin/sh", "-c", f'echo "$SWARMING_TASK_ID $SWARMING_BOT_ID" >> {runs_log}']

    def create(n: int) -> tuple[str, DroverServer]:
        server = (a, b)[n % 2]
        return server.create_task(command, tags=[tag], name=f"task {n}"), server

    with concurrent.futures.ThreadPoolExecutor(CREATORS) as pool:
        created = dict(pool.map(create, range(TASKS)))
    assert len(created) == TASKS

    def all_done() -> bool:
        summary = a.call("GET", f"/api/v1/tasks:summary?tags={tag}")
        return bool(summary.get("all_done")) and int(summary.get("total", 0)) == TASKS

    wait_for(all_done, DONE_TIMEOUT_SECS, f"{TASKS} tasks to end")

    # Both replicas report the same final results, all COMPLETED first tries.
    listed = {server: {r["task_id"]: r for r in list_tasks(server, tag)} for server in (a, b)}
    assert listed[a] == listed[b]
    results = listed[a]
    assert set(results) == set(created)
    assert Counter(r["state"] for r in results.values()) == {"COMPLETED": TASKS}
    assert {r["try_number"] for r in results.values()} == {1}
    assert {r["exit_code"] for r in results.values()} == {"0"}

    # Every run executed exactly once, on the bot its result names.
    lines = runs_log.read_text().splitlines()
    ran = [line.split() for line in lines]
    assert len(ran) == TASKS
    run_ids = Counter(run_id for run_id, _ in ran)
    assert all(count == 1 for count in run_ids.values())
    assert set(run_ids) == {task_id[:-1] + "1" for task_id in created}
    assert {run_id[:-1] + "0": bot_id for run_id, bot_id in ran} == {
        task_id: r["bot_id"] for task_id, r in results.items()
    }

    # Work crossed replicas both ways: created on one, run by a bot of the other.
    replica_of_bot = {bot_id: server for server, ids in fleet.items() for bot_id in ids}
    crossings = Counter(
        (created[task_id] is a, replica_of_bot[r["bot_id"]] is a) for task_id, r in results.items()
    )
    assert crossings[(True, False)] > 0
    assert crossings[(False, True)] > 0


def list_tasks(server: DroverServer, tag: str) -> list[dict[str, Any]]:
    """Every task with `tag`, one page of up to 1000."""
    page = server.call("GET", f"/api/v1/tasks?tags={tag}&limit=1000")
    assert not page.get("cursor"), "one page holds them all"
    items: list[dict[str, Any]] = page["items"]
    return items


def bot_call(server: DroverServer, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """POSTs to a bot API endpoint of `server`; returns the JSON answer."""
    req = urllib.request.Request(
        f"{server.url}/swarming/api/v1/bot/{name}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=HOLD_SECS + 30) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


class ProbeBot:
    """A bot played over the raw protocol, so that it can switch replicas between calls."""

    def __init__(self, bot_id: str) -> None:
        self.bot_id = bot_id
        self.session = ""
        self.dimensions = {"id": [bot_id], "os": ["Linux"]}

    def handshake(self, server: DroverServer) -> None:
        """Opens a session with `server`."""
        answer = bot_call(
            server,
            "handshake",
            {
                "dimensions": self.dimensions,
                "state": {},
                "version": version_of(server),
                "session_id": f"{uuid.uuid4().hex}/1",
            },
        )
        self.session = answer["session"]

    def poll(self, server: DroverServer) -> dict[str, Any]:
        """Polls `server` with the latest session, whichever replica minted it."""
        answer = bot_call(
            server,
            "poll",
            {
                "dimensions": self.dimensions,
                "state": {"sleep_streak": 0},
                "version": version_of(server),
                "session": self.session,
                "request_uuid": uuid.uuid4().hex,
            },
        )
        self.session = answer.get("session") or self.session
        return answer


def version_of(server: DroverServer) -> str:
    """The bot version a replica expects (its archive names its own URL)."""
    version: str = server.call("GET", "/api/v1/server")["bot_version"]
    return version


def probe_task(server: DroverServer, bot_id: str) -> str:
    """Creates, through `server`, a task only the probe bot can run."""
    return server.create_task(
        [sys.executable, "-c", "pass"],
        properties={
            "dimensions": [
                {"key": "pool", "value": "default"},
                {"key": "id", "value": bot_id},
            ]
        },
    )


def test_held_poll_and_session_cross_replicas(replicas: ReplicaPair) -> None:
    """A poll held on A is answered for a task created on B; A's session then polls B."""
    a, b = replicas(E2E_SETTINGS.replace("long_poll_secs: 2", f"long_poll_secs: {HOLD_SECS}"))
    probe = ProbeBot("probe")
    probe.handshake(a)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(probe.poll, a)
        # The poll is held on A (there is no task yet) while B creates one.
        time.sleep(1)
        assert not held.done()
        started = time.monotonic()
        first = probe_task(b, probe.bot_id)
        answer = held.result(timeout=HOLD_SECS)
        waited = time.monotonic() - started
    assert answer["cmd"] == "run"
    assert answer["manifest"]["task_id"] == first[:-1] + "1"
    # Woken, not answered by the end of its hold.
    assert waited < HOLD_SECS / 2, f"answered after {waited:.1f} s"
    # The session A minted (and refreshed) is good on B: B hands it a task.
    second = probe_task(a, probe.bot_id)
    answer = probe.poll(b)
    assert answer["cmd"] == "run", answer
    assert answer["manifest"]["task_id"] == second[:-1] + "1"
