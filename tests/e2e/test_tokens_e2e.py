"""Minted tokens end to end: a real task on a real bot gets tokens and calls the API with them;
a new machine joins with a bootstrap token (issue: token minting)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from tests.e2e.conftest import ROOT, BotProcess, DroverServer, kill_tree, wait_for

pytestmark = pytest.mark.e2e

PY = sys.executable
ACCOUNT = "ci@example.com"
SYSTEM = "sys@example.com"

# The task: tokens from LUCI_CONTEXT's local auth server, then Drover's API
# with the access token. It saves the tokens where the test can see them,
# and prints them so the test can check they are masked in its log.
TASK = r"""
import json, os, sys, urllib.request
out_path = sys.argv[1]
ctx = json.load(open(os.environ["LUCI_CONTEXT"]))
auth = ctx["local_auth"]
def local(method, body):
    body["secret"] = auth["secret"]
    req = urllib.request.Request(
        "http://127.0.0.1:%d/rpc/LuciLocalAuthService.%s" % (auth["rpc_port"], method),
        data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))
def api(method, path, token, body=None):
    req = urllib.request.Request(
        os.environ["SWARMING_SERVER"] + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))
access = local("GetOAuthToken", {"account_id": "task", "scopes": ["email"]})["access_token"]
id_token = local("GetIDToken", {"account_id": "task", "audience": "https://vault.example"})
system = local("GetOAuthToken", {"account_id": "system", "scopes": []})["access_token"]
me = api("GET", "/api/v1/whoami", access)
print("whoami", me["identity"], me["task_id"])
task = os.environ["SWARMING_TASK_ID"]
api("POST", "/api/v1/tasks/%s/results" % task, access,
    {"unit": [{"name": "token-test", "result": "pass"}]})
print("system is", api("GET", "/api/v1/whoami", system)["identity"])
print("tokens", access, id_token["id_token"], system)
json.dump({"access": access, "id": id_token["id_token"], "system": system}, open(out_path, "w"))
"""


def _configure(drover: DroverServer) -> None:
    """Allows ACCOUNT in pool default and gives bots a system account; waits for the reload."""
    bots = (drover.config_dir / "bots.cfg").read_text()
    drover.reconfigure(
        bots_cfg=bots.replace(
            'dimensions: "pool:default"',
            f'dimensions: "pool:default"\n  system_service_account: "{SYSTEM}"',
        ),
        pools_cfg=f'pool {{\n  name: "default"\n  allowed_service_account: "{ACCOUNT}"\n}}\n',
    )


def _status(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_a_task_gets_tokens_and_calls_the_api(
    drover: DroverServer, start_bot: Callable[..., BotProcess], tmp_path: pathlib.Path
) -> None:
    """The task's access token reads and reports for its task; its ID token verifies with
    PyJWT against the server's JWKS; the tokens are masked in its log and absent from logs."""
    _configure(drover)
    bot = start_bot("bot1")
    saved = tmp_path / "tokens.json"
    task_id = drover.create_task([PY, "-c", TASK, str(saved)], service_account=ACCOUNT)
    result = drover.wait(task_id, timeout=90)
    log = drover.log(task_id)
    assert result["state"] == "COMPLETED", log
    assert result["exit_code"] == "0", log
    assert f"whoami service_account:{ACCOUNT} {task_id}".encode() in log
    assert f"system is service_account:{SYSTEM}".encode() in log
    assert b"tokens [masked] [masked] [masked]" in log
    tokens = json.loads(saved.read_text())
    for token in tokens.values():
        assert token.encode() not in log
    reported = drover.call("GET", f"/api/v1/tasks/{task_id}/results")
    assert [u["name"] for u in reported["unit"]] == ["token-test"]

    jwks = jwt.PyJWKClient(f"{drover.url}/.well-known/jwks.json", cache_keys=False)
    claims = jwt.decode(
        tokens["id"],
        key=jwks.get_signing_key_from_jwt(tokens["id"]),
        algorithms=["RS256"],
        audience="https://vault.example",
        issuer=drover.url,
    )
    assert (claims["sub"], claims["task_id"], claims["bot_id"]) == (ACCOUNT, task_id, "bot1")

    # The task has ended: its access token no longer works; the system one still does.
    assert _status(f"{drover.url}/api/v1/whoami", tokens["access"]) == 401
    assert _status(f"{drover.url}/api/v1/whoami", tokens["system"]) == 200

    logs = [tmp_path / "server.log", bot.workdir / "bot.out", *bot.workdir.glob("logs/*.log")]
    text = "\n".join(p.read_text(errors="replace") for p in logs if p.exists())
    assert "minted access token of task account" in text
    for token in tokens.values():
        assert token not in text


def test_a_new_machine_joins_with_a_bootstrap_token(
    drover: DroverServer, tmp_path: pathlib.Path
) -> None:
    """`drover bootstrap-token`, then the /bootstrap script piped to python3: a bot runs a task."""
    minted = subprocess.run(
        [
            PY,
            "-m",
            "server",
            "--server",
            drover.url,
            "--json",
            "bootstrap-token",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    printed: dict[str, Any] = json.loads(minted.stdout)
    with urllib.request.urlopen(
        f"{drover.url}/bootstrap?tok={printed['token']}", timeout=30
    ) as resp:
        script = resp.read()
    machine = tmp_path / "new-machine"
    machine.mkdir()
    out = open(machine / "bootstrap.out", "wb")  # noqa: SIM115 - handed to the process
    proc = subprocess.Popen(
        [PY, "-", str(machine / "drover-bot")],
        stdin=subprocess.PIPE,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=machine,
        env={"PATH": "/usr/bin:/bin", "SWARMING_BOT_ID": "joined1", "HOME": str(machine)},
        start_new_session=True,
    )
    out.close()
    try:
        assert proc.stdin is not None
        proc.stdin.write(script)
        proc.stdin.close()
        wait_for(lambda: bool(drover.events("joined1")), 60, "the new bot to connect")
        task_id = drover.create_task(
            [PY, "-c", "print('hello from a new machine')"],
            properties={
                "dimensions": [
                    {"key": "id", "value": "joined1"},
                    {"key": "pool", "value": "default"},
                ]
            },
        )
        assert drover.wait(task_id, timeout=60)["state"] == "COMPLETED"
        assert b"hello from a new machine" in drover.log(task_id)
        assert (machine / "drover-bot" / "swarming_bot.zip").is_file()
    finally:
        kill_tree(proc.pid)
        proc.wait(10)
