"""Users, roles and pool ACLs, over both transports: who may read, write and administer.

Every case is made over HTTP/JSON and over gRPC and must get the same
answer: 401 / UNAUTHENTICATED when credentials would help, 403 /
PERMISSION_DENIED when the caller is known but lacks a role or a pool, and
the refusal says what is missing.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import json_format, message

from protos.api import auth_pb2, tasks_pb2
from tests.api.conftest import GRPC_CODE, StartBoth, Transports, status_of
from tests.botapi.scripted import task_body

POOLS = """
pool { name: "default" }
pool {
  name: "gpu"
  schedulers: "alice"
  schedulers: "service_account:trainer@example.com"
}
"""


def _pool_task(pool: str, tags: list[str] | None = None) -> dict[str, Any]:
    body = task_body(wait=True, tags=tags or [])
    body["task_slices"][0]["properties"]["dimensions"] = [{"key": "pool", "value": pool}]
    return body


class Call:
    """One RPC, as a gRPC request and as its HTTP route."""

    def __init__(
        self,
        rpc: str,
        request: message.Message,
        reply: type[message.Message],
        method: str,
        path: str,
        body: Any = None,
    ) -> None:
        self.service, self.method = rpc.split(".")
        self.request = request
        self.reply = reply
        self.http = (method, path, body)

    async def both(self, api: Transports, token: str) -> tuple[int, str]:
        """(HTTP status, message), after checking gRPC answers the same code."""
        status, answer = await api.fetch(*self.http, token=token)
        code, details = await status_of(
            api.rpc.call(self.service, self.method, self.request, self.reply, token)
        )
        assert code == GRPC_CODE[status], f"{self.service}.{self.method}: {status} vs {code}"
        text = answer.get("error", {}).get("message", "") if status != 200 else ""
        assert details == text
        return status, text


def _calls(task_id: str) -> dict[str, Call]:
    new = json_format.ParseDict(task_body(wait=True), tasks_pb2.NewTaskRequest())
    return {
        "read": Call(
            "Tasks.GetResult",
            tasks_pb2.TaskIdRequest(task_id=task_id),
            tasks_pb2.TaskResultResponse,
            "GET",
            f"/api/v1/tasks/{task_id}",
        ),
        "write": Call(
            "Tasks.NewTask",
            new,
            tasks_pb2.TaskRequestMetadataResponse,
            "POST",
            "/api/v1/tasks",
            task_body(wait=True),
        ),
        "admin": Call(
            "Auth.ListTokens",
            auth_pb2.ListTokensRequest(),
            auth_pb2.ListTokensResponse,
            "GET",
            "/api/v1/tokens",
        ),
    }


# Who calls -> (read, write, admin) statuses, on a server whose anonymous role is given.
MATRIX = {
    ("anonymous", ""): (401, 401, 401),
    ("anonymous", "viewer"): (200, 401, 401),
    ("anonymous", "scheduler"): (200, 200, 401),
    ("viewer", ""): (200, 403, 403),
    ("scheduler", ""): (200, 200, 403),
    ("admin", ""): (200, 200, 200),
}


@pytest.mark.parametrize(
    ("who", "anonymous_role"), list(MATRIX), ids=[f"{w}-{a}" for w, a in MATRIX]
)
async def test_roles_against_read_write_and_admin_calls(
    start_both: StartBoth, who: str, anonymous_role: str
) -> None:
    """Each caller gets exactly its roles' calls, the same over HTTP/JSON and gRPC."""
    api = await start_both(settings=f'anonymous_role: "{anonymous_role}"\n')
    admin = await api.token("root", "admin")
    task_id = (await api.fetch("POST", "/api/v1/tasks", task_body(wait=True), token=admin))[1][
        "task_id"
    ]
    token = "" if who == "anonymous" else await api.token(f"the-{who}", who)
    calls = _calls(task_id)
    got = tuple([(await calls[kind].both(api, token))[0] for kind in ("read", "write", "admin")])
    assert got == MATRIX[(who, anonymous_role)]


async def test_refusals_say_what_is_missing(start_both: StartBoth) -> None:
    """401 and 403 name the call, the role it needs and the role the caller holds."""
    api = await start_both(settings='anonymous_role: "viewer"\n')
    viewer = await api.token("bob", "viewer")
    calls = _calls("5f0000000000000")
    status, text = await calls["write"].both(api, "")
    assert status == 401
    assert "Tasks.NewTask needs the scheduler role" in text
    assert "callers without a token hold the viewer role" in text
    assert "Authorization: Bearer" in text
    status, text = await calls["admin"].both(api, viewer)
    assert status == 403
    assert text == (
        "Permission denied: Auth.ListTokens needs the admin role and user:bob holds the viewer role"
    )


async def test_bad_revoked_and_expired_tokens_are_401_saying_why(start_both: StartBoth) -> None:
    """A malformed, unknown, revoked or expired token is refused; the token is never echoed."""
    api = await start_both(settings='anonymous_role: "viewer"\n')
    admin = await api.token("root", "admin")
    read = _calls("5f0000000000000")["admin"]
    forged = admin[:-4] + "AAAA"
    cases = {
        "drv_nonsense": "is not an API token as issued",
        forged: "this server never issued it",
        "xyz_other_kind": "of no kind this server knows",
    }
    for token, reason in cases.items():
        status, text = await read.both(api, token)
        assert (status, reason in text) == (401, True), text
        assert token not in text
    short = await api.token("temp", "admin", expires_in_secs=60)
    assert (await read.both(api, short))[0] == 200
    api.clock.advance(61)
    status, text = await read.both(api, short)
    assert status == 401
    assert "The bearer token has expired" in text
    token_id = admin.split("_")[1]
    status, revoked = await api.fetch("POST", f"/api/v1/tokens/{token_id}:revoke", token=admin)
    assert status == 200
    assert revoked["revoked_ts"]
    status, text = await read.both(api, admin)
    assert status == 401
    assert f"The bearer token was revoked: API token {token_id}" in text


async def test_a_wrong_authorization_scheme_is_401(start_both: StartBoth) -> None:
    """`Authorization: Basic ...` is refused with a message naming the expected form."""
    api = await start_both(settings='anonymous_role: "viewer"\n')
    resp = await api.http.get("/api/v1/tasks", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="drover"'
    assert "must be 'Bearer <token>'" in (await resp.json())["error"]["message"]


async def test_pool_acls_decide_who_may_schedule_and_control(start_both: StartBoth) -> None:
    """In an ACL'd pool only its listed schedulers and admins create, control and batch."""
    api = await start_both(settings='anonymous_role: "scheduler"\n', pools=POOLS)
    alice = await api.token("alice", "scheduler")
    bob = await api.token("bob", "scheduler")
    admin = await api.token("root", "admin")
    gpu = _pool_task("gpu", tags=["team:ml"])
    status, answer = await api.fetch("POST", "/api/v1/tasks", gpu, token=bob)
    assert status == 403
    assert "user:bob may not schedule in pool 'gpu'" in answer["error"]["message"]
    assert (
        "pools.cfg admits only alice, service_account:trainer@example.com"
        in (answer["error"]["message"])
    )
    status, answer = await api.fetch("POST", "/api/v1/tasks", gpu)
    assert status == 401  # anonymous: a token could help
    status, created = await api.fetch("POST", "/api/v1/tasks", gpu, token=alice)
    assert status == 200
    assert created["request"]["authenticated"] == "user:alice"
    task_id = created["task_id"]
    assert (await api.fetch("POST", "/api/v1/tasks", gpu, token=admin))[0] == 200
    # Anyone holding the scheduler role may use the open pool.
    assert (await api.fetch("POST", "/api/v1/tasks", _pool_task("default"), token=bob))[0] == 200

    pause = tasks_pb2.TaskIdRequest(task_id=task_id)
    code, details = await status_of(
        api.rpc.call("Tasks", "PauseTask", pause, tasks_pb2.TaskControlResponse, bob)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "pool 'gpu'" in details
    assert (await api.fetch("POST", f"/api/v1/tasks/{task_id}:cancel", {}, token=bob))[0] == 403
    batch = {"tags": ["team:ml"], "dry_run": True}
    assert (await api.fetch("POST", "/api/v1/tasks:cancel", batch, token=bob))[0] == 403
    status, answer = await api.fetch("POST", "/api/v1/tasks:pause", batch, token=alice)
    assert status == 200
    assert len(answer["task_ids"]) == 2
    status, _ = await api.fetch("POST", f"/api/v1/tasks/{task_id}:cancel", {}, token=alice)
    assert status == 200
    assert (await api.fetch("GET", f"/api/v1/tasks/{task_id}", token=bob))[1]["state"] == "CANCELED"


async def test_a_refused_batch_changes_nothing(start_both: StartBoth) -> None:
    """A batch reaching one task in a pool the caller may not use is refused before any change."""
    api = await start_both(settings='anonymous_role: "viewer"\n', pools=POOLS)
    alice = await api.token("alice", "scheduler")
    bob = await api.token("bob", "scheduler")
    mine = (await api.fetch("POST", "/api/v1/tasks", _pool_task("default", ["rev:3"]), token=bob))[
        1
    ]
    theirs = (await api.fetch("POST", "/api/v1/tasks", _pool_task("gpu", ["rev:3"]), token=alice))[
        1
    ]
    status, answer = await api.fetch("POST", "/api/v1/tasks:cancel", {"tags": ["rev:3"]}, token=bob)
    assert status == 403
    assert "pool 'gpu'" in answer["error"]["message"]
    for created in (mine, theirs):
        result = (await api.fetch("GET", f"/api/v1/tasks/{created['task_id']}"))[1]
        assert result["state"] == "PENDING"


async def test_tokens_are_managed_through_the_api_by_admins(start_both: StartBoth) -> None:
    """An admin creates a token (shown once), lists it without its secret and revokes it."""
    api = await start_both()
    admin = await api.token("root", "admin")
    api.clock.advance(1)  # listed oldest first
    status, created = await api.fetch(
        "POST", "/api/v1/tokens", {"name": "ci", "role": "scheduler"}, token=admin
    )
    assert status == 200
    assert created["token"].startswith("drv_")
    assert created["info"]["created_by"] == "user:root"
    me = (await api.fetch("GET", "/api/v1/whoami", token=created["token"]))[1]
    assert me == {"identity": "user:ci", "roles": ["viewer", "scheduler"], "task_id": ""}
    listing = (await api.fetch("GET", "/api/v1/tokens", token=admin))[1]
    assert [t["name"] for t in listing["items"]] == ["root", "ci"]
    assert created["token"] not in str(listing)
    bad = await api.fetch(
        "POST", "/api/v1/tokens", {"name": "a b", "role": "scheduler"}, token=admin
    )
    assert bad[0] == 400
    assert "name 'a b'" in bad[1]["error"]["message"]
    bad = await api.fetch("POST", "/api/v1/tokens", {"name": "x", "role": "boss"}, token=admin)
    assert bad[0] == 400
    assert "role 'boss' is not one of viewer, scheduler, admin" in bad[1]["error"]["message"]
    assert len((await api.fetch("GET", "/api/v1/tokens", token=admin))[1]["items"]) == 2
    missing = await api.fetch("POST", "/api/v1/tokens/0123456789abcdef:revoke", token=admin)
    assert missing[0] == 404


async def test_the_output_stream_is_guarded_too(start_both: StartBoth) -> None:
    """Following a task's output needs the viewer role over both transports."""
    api = await start_both(settings="")
    stream = api.rpc.channel.unary_stream(
        "/drover.api.v1.Tasks/StreamStdout",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=tasks_pb2.TaskStdoutResponse.FromString,
    )
    call = stream(tasks_pb2.TaskStdoutRequest(task_id="5f0000000000000"), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    status, answer = await api.fetch("GET", "/api/v1/tasks/5f0000000000000/stdout:stream")
    assert status == 401
    assert "Tasks.StreamStdout needs the viewer role" in answer["error"]["message"]
