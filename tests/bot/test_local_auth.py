"""The task's local token server (bot/local_auth.py), alone and inside a real bot."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.local_auth import (
    ID_TOKEN_PATH,
    MIN_LIFETIME,
    OAUTH_PATH,
    LocalAuthServer,
    TokenSource,
    accounts_of,
)
from bot.remote import Remote
from bot.stream import MASK
from tests.bot.conftest import StartBot
from tests.bot.fakeserver import FakeServer, Recorded, json_reply, manifest

T1 = "1a2b3c4d5e6f7001"
NOW = 1_800_000_000.0


def accounts(task: str = "none", system: str = "none") -> dict[str, Any]:
    """A manifest's service_accounts."""
    return {
        "service_accounts": {
            "system": {"service_account": system},
            "task": {"service_account": task},
        }
    }


class Minter:
    """The fake server's token calls: numbered tokens expiring `life` seconds after NOW."""

    def __init__(self, life: float = 900) -> None:
        self.count = 0
        self.life = life

    def __call__(self, rec: Recorded) -> dict[str, Any]:
        self.count += 1
        field = "access_token" if rec.endpoint == "oauth_token" else "id_token"
        token = f"drt_minted{self.count}.{rec.body['account_id']}"
        return {"service_account": "ci@example.com", field: token, "expiry": NOW + self.life}


def test_accounts_come_from_the_manifest() -> None:
    """Only real accounts are served; a task account of "bot" is the system account."""
    assert accounts_of(accounts()) == {}
    assert accounts_of(accounts(task="ci@x.com")) == {"task": ("ci@x.com", "task")}
    assert accounts_of(accounts(task="bot", system="sys@x.com")) == {
        "system": ("sys@x.com", "system"),
        "task": ("sys@x.com", "system"),
    }
    assert accounts_of({"service_accounts": "junk"}) == {}


MakeAuth = Callable[[list[float], list[str]], LocalAuthServer]


@pytest.fixture
def make_auth(server: FakeServer) -> Iterator[MakeAuth]:
    """Local auth servers (not started: tests call `answer`) over the fake server."""
    made: list[LocalAuthServer] = []

    def make(clock: list[float], handed: list[str]) -> LocalAuthServer:
        remote = Remote(server.url, bot_id="test-bot", version="v", session="s-1")
        source = TokenSource(
            remote,
            bot_id="test-bot",
            run_id=T1,
            manifest=accounts(task="ci@example.com"),
            on_token=handed.append,
            clock=lambda: clock[0],
        )
        made.append(LocalAuthServer(source))
        return made[-1]

    yield make
    for auth in made:
        auth.stop()


def _post(auth: LocalAuthServer, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, answer = auth.answer(path, json.dumps(body).encode())
    return status, answer


def test_tokens_are_cached_then_refreshed_before_expiry(
    server: FakeServer, make_auth: MakeAuth
) -> None:
    """A token is reused while it has MIN_LIFETIME left, then a new one is asked for."""
    minter = server.tokens = Minter()
    clock, handed = [NOW], list[str]()
    auth = make_auth(clock, handed)
    body = {"account_id": "task", "scopes": ["email"], "secret": auth.secret}
    assert _post(auth, OAUTH_PATH, body) == (
        200,
        {"access_token": "drt_minted1.task", "expiry": int(NOW + 900)},
    )
    clock[0] = NOW + 900 - MIN_LIFETIME - 1
    assert _post(auth, OAUTH_PATH, body)[1]["access_token"] == "drt_minted1.task"
    clock[0] += 2
    assert _post(auth, OAUTH_PATH, body)[1]["access_token"] == "drt_minted2.task"
    assert handed == ["drt_minted1.task", "drt_minted2.task"]
    asked = server.of("oauth_token")[-1].body
    assert asked == {
        "account_id": "task",
        "id": "test-bot",
        "scopes": ["email"],
        "session": "s-1",
        "task_id": T1,
    }
    assert minter.count == 2


def test_id_tokens_per_audience(server: FakeServer, make_auth: MakeAuth) -> None:
    """ID tokens are asked for with the audience, one per audience."""
    server.tokens = Minter()
    auth = make_auth([NOW], [])
    first = _post(auth, ID_TOKEN_PATH, {"audience": "a", "secret": auth.secret})
    assert first == (200, {"expiry": int(NOW + 900), "id_token": "drt_minted1.task"})
    assert server.of("id_token")[-1].body["audience"] == "a"
    assert _post(auth, ID_TOKEN_PATH, {"audience": "b", "secret": auth.secret})[1]["id_token"] == (
        "drt_minted2.task"
    )


def test_refusals(server: FakeServer, make_auth: MakeAuth) -> None:
    """Wrong secret 403, bad requests 400, unknown paths 404, and server refusals error_code."""
    server.tokens = lambda r: json_reply({"error": "task has ended"}, 403)
    auth = make_auth([NOW], [])
    assert _post(auth, OAUTH_PATH, {"scopes": [], "secret": "nope"})[0] == 403
    assert _post(auth, OAUTH_PATH, {"scopes": "x", "secret": auth.secret})[0] == 400
    assert _post(auth, ID_TOKEN_PATH, {"secret": auth.secret})[0] == 400
    assert auth.answer("/rpc/Other", b"{}")[0] == 404
    assert auth.answer(OAUTH_PATH, b"not json")[0] == 400
    status, answer = _post(auth, OAUTH_PATH, {"scopes": [], "secret": auth.secret})
    assert status == 200
    assert answer["error_code"] == 403
    assert "task has ended" in answer["error_message"]
    status, answer = _post(
        auth, OAUTH_PATH, {"account_id": "system", "scopes": [], "secret": auth.secret}
    )
    assert (status, answer["error_code"]) == (200, 404)


TASK = r"""
import json, os, sys, time, urllib.request
ctx = json.load(open(os.environ["LUCI_CONTEXT"]))
auth = ctx["local_auth"]
def call(method, body):
    body["secret"] = auth["secret"]
    req = urllib.request.Request(
        "http://127.0.0.1:%d/rpc/LuciLocalAuthService.%s" % (auth["rpc_port"], method),
        data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
access = call("GetOAuthToken", {"account_id": "task", "scopes": ["email"]})["access_token"]
print("access", access)
# The same token again in two writes a moment apart: two reads for the bot.
sys.stdout.write("split " + access[:9])
sys.stdout.flush()
time.sleep(0.5)
print(access[9:] + " end")
print("id", call("GetIDToken", {"account_id": "task", "audience": "aud"})["id_token"])
print("secret", auth["secret"], auth["default_account_id"], ctx["swarming"]["task"]["task_id"])
"""


def test_a_task_gets_tokens_through_luci_context(server: FakeServer, start_bot: StartBot) -> None:
    """A real bot serves the task's tokens locally and masks them and the secret in its log."""
    server.tokens = Minter()
    server.run(manifest(T1, [sys.executable, "-c", TASK], **accounts(task="ci@example.com")))
    bot = start_bot()
    final = server.wait_final(T1).body
    assert final["exit_code"] == 0, server.output(T1)
    out = server.output(T1)
    assert b"drt_minted" not in out
    assert out.count(MASK) == 4, out
    assert b"split " + MASK + b" end\n" in out
    assert f"{MASK.decode()} task 1a2b3c4d5e6f7000".encode() in out
    assert [r.body["task_id"] for r in server.of("oauth_token")] == [T1]
    assert server.of("id_token")[0].body["audience"] == "aud"
    assert "drt_minted" not in bot.log()


def test_no_account_no_server(server: FakeServer, start_bot: StartBot) -> None:
    """A task without a service account gets no LUCI_CONTEXT."""
    code = "import os; print('ctx', os.environ.get('LUCI_CONTEXT'))"
    server.run(manifest(T1, [sys.executable, "-c", code], **accounts()))
    start_bot()
    server.wait_final(T1)
    assert b"ctx None" in server.output(T1)
    assert not server.of("oauth_token")
