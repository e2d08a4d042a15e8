"""oauth_token and id_token on a real server: who gets which token, and what it is good for."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.app import ServerOptions, create_app
from server.appkeys import CONFIG
from server.auth import access_tokens
from server.clock import FakeClock
from server.config.live import LiveConfig
from tests.botapi.scripted import ScriptedBot, task_body
from tests.conftest import app_of
from tests.e2e.conftest import free_port

ACCOUNT = "ci@example.com"
SYSTEM = "sys@example.com"
BOTS_CFG = f"""
trusted_dimensions: "pool"
bot_group {{
  name: "default"
  auth {{ ip_allowlist: "127.0.0.0/8" }}
  dimensions: "pool:default"
  system_service_account: "{SYSTEM}"
}}
"""
POOLS_CFG = f"""
pool {{
  name: "default"
  allowed_service_account: "{ACCOUNT}"
}}
pool {{
  name: "other"
}}
"""

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def server(
    tmp_path: pathlib.Path, config_dir: pathlib.Path, clock: FakeClock
) -> AsyncIterator[Client]:
    """A server on a real loopback port that its own URL (the ID tokens' issuer) names."""
    (config_dir / "bots.cfg").write_text(BOTS_CFG)
    (config_dir / "pools.cfg").write_text(POOLS_CFG)
    (config_dir / "settings.cfg").write_text('long_poll_secs: 0\nanonymous_role: "scheduler"\n')
    port = free_port()
    options = ServerOptions(
        state_dir=tmp_path / "state",
        config_dir=config_dir,
        server_url=f"http://127.0.0.1:{port}",
        config_poll_secs=0,
        sweep_secs=0,
    )
    app = await create_app(options, clock=clock, config=LiveConfig(config_dir, clock=clock))
    client = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    yield client
    await client.close()


async def running(client: Client, bot: ScriptedBot, **extra: Any) -> str:
    """Creates a task, hands it to `bot` and confirms it; returns the run ID."""
    resp = await client.post("/api/v1/tasks", json=task_body(service_account=ACCOUNT, **extra))
    assert resp.status == 200, await resp.text()
    answer = await bot.poll()
    assert answer["cmd"] == "run", answer
    run_id: str = answer["manifest"]["task_id"]
    assert answer["manifest"]["service_accounts"] == {
        "system": {"service_account": SYSTEM},
        "task": {"service_account": ACCOUNT},
    }
    await bot.update(run_id)
    return run_id


async def ask(bot: ScriptedBot, endpoint: str, status: int = 200, **body: Any) -> dict[str, Any]:
    """Calls oauth_token or id_token with the bot's session."""
    return await bot.call(endpoint, {"id": bot.bot_id, "session": bot.session, **body}, status)


async def started_bot(client: Client, bot_id: str = "bot1") -> ScriptedBot:
    """A bot that handshook."""
    bot = ScriptedBot(client, bot_id=bot_id)
    await bot.handshake()
    return bot


async def api(
    client: Client, method: str, path: str, token: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    """Calls the client API with a bearer token."""
    resp = await client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return resp.status, await resp.json()


async def test_task_access_token_acts_for_its_task(server: Client) -> None:
    """The task's token names its account and task, reads, and reports its own results only."""
    bot = await started_bot(server)
    run_id = await running(server, bot)
    task_id = run_id[:-1] + "0"
    answer = await ask(bot, "oauth_token", account_id="task", task_id=run_id, scopes=["email"])
    token = answer["access_token"]
    assert token.startswith("drt_")
    assert answer["service_account"] == ACCOUNT
    assert isinstance(answer["expiry"], int)
    status, me = await api(server, "GET", "/api/v1/whoami", token)
    assert (status, me["identity"], me["task_id"]) == (200, f"service_account:{ACCOUNT}", task_id)
    assert me["roles"] == ["viewer"]
    status, result = await api(server, "GET", f"/api/v1/tasks/{task_id}", token)
    assert (status, result["state"]) == (200, "RUNNING")
    unit = {"unit": [{"name": "t1", "result": "pass"}]}
    status, _ = await api(server, "POST", f"/api/v1/tasks/{task_id}/results", token, unit)
    assert status == 200
    other = (await (await server.post("/api/v1/tasks", json=task_body(wait=True))).json())[
        "task_id"
    ]
    status, refused = await api(server, "POST", f"/api/v1/tasks/{other}/results", token, unit)
    assert status == 403, refused
    status, refused = await api(server, "POST", "/api/v1/tasks", token, task_body())
    assert status == 403, refused


async def test_access_token_is_refused_once_the_task_ends(server: Client) -> None:
    """After the run's completion the same token gets 401 saying the task has ended."""
    bot = await started_bot(server)
    run_id = await running(server, bot)
    token = (await ask(bot, "oauth_token", account_id="task", task_id=run_id))["access_token"]
    await bot.update(run_id, exit_code=0, duration=1.0)
    status, refused = await api(server, "GET", "/api/v1/whoami", token)
    assert status == 401
    assert "has ended (COMPLETED)" in refused["error"]["message"]
    assert token not in json.dumps(refused)
    await ask(bot, "oauth_token", 403, account_id="task", task_id=run_id)


async def test_access_token_expires(server: Client, clock: FakeClock) -> None:
    """A token is refused from its expiry on, even while its task still runs."""
    bot = await started_bot(server)
    run_id = await running(server, bot)
    token = (await ask(bot, "oauth_token", account_id="task", task_id=run_id))["access_token"]
    clock.advance(access_tokens.LIFETIME_SECS)
    status, refused = await api(server, "GET", "/api/v1/whoami", token)
    assert status == 401
    assert "expired" in refused["error"]["message"]


async def test_pool_no_longer_allowing_the_account_revokes(
    server: Client, config_dir: pathlib.Path
) -> None:
    """Removing the account from the pool stops its tokens and its minting at once."""
    bot = await started_bot(server)
    run_id = await running(server, bot)
    token = (await ask(bot, "oauth_token", account_id="task", task_id=run_id))["access_token"]
    (config_dir / "pools.cfg").write_text('pool { name: "default" }\n')
    assert app_of(server)[CONFIG].reload()
    status, refused = await api(server, "GET", "/api/v1/whoami", token)
    assert status == 401
    assert "allowed_service_account" in refused["error"]["message"]
    await ask(bot, "oauth_token", 403, account_id="task", task_id=run_id)


async def test_system_account_tokens(server: Client) -> None:
    """account_id "system" mints for the group's system_service_account, with no task."""
    bot = await started_bot(server)
    await bot.poll()
    answer = await ask(bot, "oauth_token", account_id="system", scopes=[])
    assert answer["service_account"] == SYSTEM
    status, me = await api(server, "GET", "/api/v1/whoami", answer["access_token"])
    assert (status, me["identity"], me["task_id"]) == (200, f"service_account:{SYSTEM}", "")
    id_answer = await ask(bot, "id_token", account_id="system", audience="https://a.example")
    claims = jwt.decode(id_answer["id_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["bot_id"], claims["pool"]) == (SYSTEM, "bot1", "default")
    assert "task_id" not in claims


async def test_account_none_mints_nothing(server: Client) -> None:
    """A task without a service account gets {"service_account": "none"} and no token."""
    bot = await started_bot(server)
    await server.post("/api/v1/tasks", json=task_body())
    run_id = (await bot.poll())["manifest"]["task_id"]
    await bot.update(run_id)
    answer = await ask(bot, "oauth_token", account_id="task", task_id=run_id)
    assert answer == {"service_account": "none"}
    answer = await ask(bot, "id_token", account_id="task", task_id=run_id, audience="x")
    assert answer == {"service_account": "none"}


async def test_refusals(server: Client, clock: FakeClock) -> None:
    """Wrong bot, wrong task, ended task, bad session and unknown account are refused."""
    bot = await started_bot(server)
    other = await started_bot(server, "bot2")
    run_id = await running(server, bot)
    # Another bot's session cannot mint for bot1's run, nor pretend to be bot1.
    refused = await ask(other, "oauth_token", 403, account_id="task", task_id=run_id)
    assert "not the current run of bot 'bot2'" in refused["error"]
    body = {"id": "bot1", "session": other.session, "account_id": "task", "task_id": run_id}
    assert "belongs to bot 'bot2'" in (await other.call("oauth_token", body, 403))["error"]
    # A run ID of the right task but another try, and a task that does not exist.
    await ask(bot, "oauth_token", 403, account_id="task", task_id=run_id[:-1] + "2")
    await ask(bot, "id_token", 403, account_id="task", task_id="1234567890abcd1", audience="a")
    # Malformed requests and an unknown account.
    refused = await ask(bot, "oauth_token", 400, account_id="admin", task_id=run_id)
    assert "account_id" in refused["error"]
    await ask(bot, "oauth_token", 400, account_id="task")
    await ask(bot, "id_token", 400, account_id="task", task_id=run_id)
    await ask(bot, "oauth_token", 400, account_id="task", task_id=run_id, scopes="email")
    # No session, a forged one.
    await bot.call("oauth_token", {"account_id": "task", "task_id": run_id}, 401)
    forged = {"session": "AAAA", "account_id": "task", "task_id": run_id}
    await bot.call("oauth_token", forged, 401)
    # An ended task.
    await bot.update(run_id, exit_code=0, duration=1.0)
    refused = await ask(bot, "id_token", 403, account_id="task", task_id=run_id, audience="a")
    assert "has ended (COMPLETED)" in refused["error"]
    # A system token needs a session that has not expired.
    clock.advance(2 * 3600)
    await ask(bot, "oauth_token", 401, account_id="system")


async def test_creation_refuses_an_account_the_pool_does_not_allow(server: Client) -> None:
    """A task asking for an account its pool does not list is a 403 that stores nothing."""
    body = task_body(service_account="intruder@example.com", wait=True)
    resp = await server.post("/api/v1/tasks", json=body)
    assert resp.status == 403
    message = (await resp.json())["error"]["message"]
    assert "intruder@example.com" in message
    assert "pool 'default'" in message
    body = task_body(service_account=ACCOUNT, wait=True)
    body["task_slices"][0]["properties"]["dimensions"] = [{"key": "pool", "value": "other"}]
    assert (await server.post("/api/v1/tasks", json=body)).status == 403
    listed = await (await server.get("/api/v1/tasks")).json()
    assert listed.get("items", []) == []
    ok = await server.post("/api/v1/tasks", json=task_body(service_account=ACCOUNT, wait=True))
    assert ok.status == 200


async def test_id_token_verifies_against_the_jwks_over_http(
    server: Client, clock: FakeClock
) -> None:
    """PyJWT checks the ID token with the keys it fetches from discovery's jwks_uri."""
    bot = await started_bot(server)
    run_id = await running(server, bot)
    answer = await ask(
        bot, "id_token", account_id="task", task_id=run_id, audience="https://vault.example"
    )
    token = answer["id_token"]
    base = str(server.make_url(""))
    discovery = await asyncio.to_thread(_get_json, base + "/.well-known/openid-configuration")
    assert discovery["issuer"] == base.rstrip("/")
    client = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=False)
    key = await asyncio.to_thread(client.get_signing_key_from_jwt, token)
    claims = jwt.decode(
        token,
        key=key,
        algorithms=discovery["id_token_signing_alg_values_supported"],
        audience="https://vault.example",
        issuer=discovery["issuer"],
        # PyJWT reads the real clock; the times are checked against the fake one.
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["nbf"] <= clock.now() < claims["exp"] == answer["expiry"]
    assert claims["sub"] == ACCOUNT
    assert (claims["task_id"], claims["run_id"]) == (run_id[:-1] + "0", run_id)
    assert (claims["bot_id"], claims["pool"]) == ("bot1", "default")
    assert jwt.get_unverified_header(token)["kid"] == key.key_id


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc: dict[str, Any] = json.load(resp)
        return doc


async def test_minted_tokens_never_reach_the_logs(
    server: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Every log record of minting and using tokens is free of the tokens themselves."""
    caplog.set_level(logging.DEBUG)
    bot = await started_bot(server)
    run_id = await running(server, bot)
    calls: list[Callable[[], Awaitable[dict[str, Any]]]] = [
        lambda: ask(bot, "oauth_token", account_id="task", task_id=run_id),
        lambda: ask(bot, "id_token", account_id="task", task_id=run_id, audience="a"),
        lambda: ask(bot, "oauth_token", account_id="system"),
    ]
    tokens = []
    for call in calls:
        answer = await call()
        tokens.append(answer.get("access_token") or answer["id_token"])
    await api(server, "GET", "/api/v1/whoami", tokens[0])
    await bot.update(run_id, exit_code=0, duration=1.0)
    await api(server, "GET", "/api/v1/whoami", tokens[0])
    assert any("minted" in r.getMessage() for r in caplog.records)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for token in tokens:
        assert token not in text


def let_the_account_schedule(server: Client, config_dir: pathlib.Path, *also: str) -> None:
    """Names ACCOUNT (and the `also` entries) in pool default's ACL, and reloads the config."""
    entries = "".join(f'\n  schedulers: "{e}"' for e in (f"service_account:{ACCOUNT}", *also))
    (config_dir / "pools.cfg").write_text(
        POOLS_CFG.replace(
            f'allowed_service_account: "{ACCOUNT}"',
            f'allowed_service_account: "{ACCOUNT}"{entries}',
        )
    )
    assert app_of(server)[CONFIG].reload()


async def test_pool_naming_the_account_lets_its_tokens_schedule_there(
    server: Client, config_dir: pathlib.Path
) -> None:
    """A pool whose ACL names the service account admits its tokens' tasks; others do not."""
    bot = await started_bot(server)
    run_id = await running(server, bot)
    token = (await ask(bot, "oauth_token", account_id="task", task_id=run_id))["access_token"]
    let_the_account_schedule(server, config_dir)
    status, created = await api(server, "POST", "/api/v1/tasks", token, task_body(wait=True))
    assert status == 200, created
    child = created["task_id"]
    status, answer = await api(server, "POST", f"/api/v1/tasks/{child}:cancel", token, {})
    assert (status, answer["canceled"]) == (200, True)
    elsewhere = task_body(wait=True)
    elsewhere["task_slices"][0]["properties"]["dimensions"] = [{"key": "pool", "value": "other"}]
    status, refused = await api(server, "POST", "/api/v1/tasks", token, elsewhere)
    assert status == 403, refused
    assert "scheduler role" in refused["error"]["message"]


async def test_a_task_scheduling_with_its_own_token_becomes_the_parent(
    server: Client, config_dir: pathlib.Path
) -> None:
    """A task that creates a task with its own token is that task's parent unless the
    request names another, and its completion cancels that child only."""
    bot = await started_bot(server)
    run_id = await running(server, bot)
    task_id = run_id[:-1] + "0"
    token = (await ask(bot, "oauth_token", account_id="task", task_id=run_id))["access_token"]
    let_the_account_schedule(server, config_dir, "role:scheduler")
    status, created = await api(server, "POST", "/api/v1/tasks", token, task_body(wait=True))
    assert status == 200, created
    assert created["request"]["parent_task_id"] == task_id
    assert f"parent_task_id:{task_id}" in created["request"]["tags"]
    resp = await server.post("/api/v1/tasks", json=task_body(wait=True))
    other = (await resp.json())["task_id"]
    named = task_body(wait=True, parent_task_id=other)
    status, adopted = await api(server, "POST", "/api/v1/tasks", token, named)
    assert (status, adopted["request"]["parent_task_id"]) == (200, other)
    await bot.update(run_id, exit_code=0, duration=1.0)
    states = [
        (await (await server.get(f"/api/v1/tasks/{body['task_id']}")).json())["state"]
        for body in (created, adopted)
    ]
    assert states == ["CANCELED", "PENDING"]
