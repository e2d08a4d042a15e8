"""Children stop with their parent, end to end: a real task on a real bot creates two
children through the API and exits; the one running on another bot is killed, the one
still pending is cancelled (PROTOCOL.md 4.1)."""

from __future__ import annotations

import pathlib
import re
import sys
from collections.abc import Callable

import pytest

from tests.e2e.conftest import BotProcess, DroverServer, wait_for
from tests.e2e.test_control_e2e import is_alive, pid_from

pytestmark = pytest.mark.e2e

PY = sys.executable
ACCOUNT = "ci@example.com"
# The test schedules anonymously (role:scheduler); the task with its own token.
POOLS_CFG = f"""
pool {{
  name: "default"
  allowed_service_account: "{ACCOUNT}"
  schedulers: "role:scheduler"
  schedulers: "service_account:{ACCOUNT}"
}}
"""

# The parent: with its own access token (from LUCI_CONTEXT's local auth server) it
# creates a child without naming a parent, and waits until that child's process has
# started on the other bot; then, without a token, it creates a second child naming
# itself as parent, which stays pending (both bots are busy), and exits 0.
PARENT = r"""
import json, os, sys, time, urllib.request
pid_path = sys.argv[1]
auth = json.load(open(os.environ["LUCI_CONTEXT"]))["local_auth"]
req = urllib.request.Request(
    "http://127.0.0.1:%d/rpc/LuciLocalAuthService.GetOAuthToken" % auth["rpc_port"],
    data=json.dumps({"account_id": "task", "scopes": ["email"], "secret": auth["secret"]}).encode(),
    headers={"Content-Type": "application/json"})
token = json.load(urllib.request.urlopen(req, timeout=60))["access_token"]
def api(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(
        os.environ["SWARMING_SERVER"] + path, method=method, headers=headers,
        data=None if body is None else json.dumps(body).encode())
    return json.load(urllib.request.urlopen(req, timeout=30))
def task(command, **extra):
    props = {"command": command, "dimensions": [{"key": "pool", "value": "default"}],
             "execution_timeout_secs": 120, "grace_period_secs": 2}
    return {"name": "child", "task_slices": [{"expiration_secs": 600, "properties": props}],
            **extra}
sleeper = [sys.executable, "-c",
           "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)",
           pid_path]
running = api("POST", "/api/v1/tasks", task(sleeper), token)["task_id"]
print("running child", running, flush=True)
deadline = time.time() + 60
while not (os.path.exists(pid_path) and open(pid_path).read().strip()):
    if time.time() > deadline:
        sys.exit("the child never started")
    time.sleep(0.2)
mine = os.environ["SWARMING_TASK_ID"]
pending = api("POST", "/api/v1/tasks", task(["true"], parent_task_id=mine))["task_id"]
print("pending child", pending, flush=True)
"""


def test_a_parent_that_exits_stops_its_children(
    drover: DroverServer, start_bot: Callable[..., BotProcess], tmp_path: pathlib.Path
) -> None:
    """The child a task made with its own token (its parent by default) is KILLED, its
    process gone, and the pending child that names it is CANCELED, once the task exits 0."""
    drover.reconfigure(pools_cfg=POOLS_CFG)
    start_bot("bot1")
    start_bot("bot2")
    child_pid = tmp_path / "child.pid"
    parent = drover.create_task([PY, "-c", PARENT, str(child_pid)], service_account=ACCOUNT)
    result = drover.wait(parent, timeout=90)
    log = drover.log(parent).decode(errors="replace")
    assert (result["state"], result["exit_code"]) == ("COMPLETED", "0"), log
    found = dict(re.findall(r"(running|pending) child (\w+)", log))
    assert set(found) == {"running", "pending"}, log
    assert drover.result(found["pending"])["state"] == "CANCELED"
    assert drover.wait(found["running"], timeout=60)["state"] == "KILLED"
    pid = pid_from(child_pid)
    wait_for(lambda: not is_alive(pid), 15, "the child's process to end")
    for child in found.values():
        # Kept as sent: the token's task ID, or SWARMING_TASK_ID (the parent's run ID).
        request = drover.call("GET", f"/api/v1/tasks/{child}/request")
        assert request["parent_task_id"][:-1] == parent[:-1]
        assert f"parent_task_id:{parent}" in request["tags"]
