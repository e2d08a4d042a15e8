"""The access policy: principals, ACL entries, the chain of verifiers, the rule table,
and the warning for anonymous writes beyond loopback.

A second kind of token plugs into the Authenticator here the way task access
tokens do (issue 6): a verifier that recognizes its own prefix and returns a
service-account Principal acting for one task.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
from collections.abc import Mapping

import pytest
from aiohttp.test_utils import TestClient, TestServer

from protos.api import auth_pb2, bots_pb2, server_pb2, tasks_pb2
from server.api import guard
from server.app import ServerOptions, create_app
from server.auth.access import RULES, Access
from server.auth.authenticator import Authenticator, ExpiredToken
from server.auth.exposure import exposure_warning, is_loopback, warn_if_exposed
from server.auth.principal import Principal, acl_entry_error, implied, matches
from server.clock import FakeClock
from server.config.live import LiveConfig
from server.errors import PermissionDenied, TaskNotFound, Unauthenticated
from server.model import TaskProperties, TaskRequest, TaskSlice

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICES = [
    tasks_pb2.DESCRIPTOR.services_by_name["Tasks"],
    bots_pb2.DESCRIPTOR.services_by_name["Bots"],
    server_pb2.DESCRIPTOR.services_by_name["Server"],
    auth_pb2.DESCRIPTOR.services_by_name["Auth"],
]
TRAINER = "service_account:trainer@example.com"
TASK = "6a0000000000010"


class FakeTaskTokens:
    """A second kind of bearer token, "tst_<task>": a service account acting for a task."""

    async def verify(self, token: str) -> Principal | None:
        if not token.startswith("tst_"):
            return None
        if token == "tst_expired":
            raise ExpiredToken("task token for the test")
        return Principal(identity=TRAINER, roles=implied("viewer"), task_id=token[4:])


class Users:
    """API-token-like users: "user-<name>-<role>"."""

    async def verify(self, token: str) -> Principal | None:
        if not token.startswith("user-"):
            return None
        _, name, role = token.split("-")
        return Principal.user(name, role)


def _request(pool: str) -> TaskRequest:
    props = TaskProperties(command=["true"], dimensions=[("pool", pool)])
    return TaskRequest(
        task_id=TASK, created_ts=0.0, name="t", priority=1, slices=[TaskSlice(props, 60)]
    )


@pytest.fixture
def access(tmp_path: pathlib.Path) -> Access:
    """An Access over a config whose pool "gpu" admits the trainer account and alice."""
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", configs, ignore=shutil.ignore_patterns("examples"))
    (configs / "pools.cfg").write_text(
        f'pool {{ name: "default" }}\npool {{\n  name: "gpu"\n  schedulers: "{TRAINER}"\n'
        '  schedulers: "user:alice"\n}\n'
    )
    config = LiveConfig(configs, clock=FakeClock())
    pools = {TASK: "gpu", "6b0000000000010": "default"}

    async def read_request(task_id: str) -> TaskRequest:
        if task_id not in pools:
            raise TaskNotFound(task_id)
        return _request(pools[task_id])

    authenticator = Authenticator(
        [Users(), FakeTaskTokens()], lambda: config.current.settings.anonymous_role
    )
    return Access(authenticator, config, read_request)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_roles_imply_the_roles_below() -> None:
    """admin holds scheduler and viewer; scheduler holds viewer; no role holds nothing."""
    assert Principal.user("a", "admin").roles == {"admin", "scheduler", "viewer"}
    assert Principal.user("a", "scheduler").top_role == "scheduler"
    assert Principal.anonymous("").roles == frozenset()
    with pytest.raises(ValueError, match="unknown role 'boss'"):
        implied("boss")


@pytest.mark.parametrize(
    ("entry", "who", "expected"),
    [
        ("alice", Principal.user("alice", "viewer"), True),
        ("user:alice", Principal.user("alice", "viewer"), True),
        ("alice", Principal.user("bob", "admin"), False),
        ("role:scheduler", Principal.user("bob", "admin"), True),
        ("role:admin", Principal.user("bob", "scheduler"), False),
        (TRAINER, Principal(identity=TRAINER), True),
        ("role:viewer", Principal.anonymous("viewer"), True),
    ],
)
def test_acl_entries_match_by_identity_or_role(entry: str, who: Principal, expected: bool) -> None:
    """A pools.cfg entry names a user, a service account, or everyone holding a role."""
    assert acl_entry_error(entry) == ""
    assert matches(who, entry) is expected


async def test_a_second_kind_of_token_plugs_in_as_a_verifier(access: Access) -> None:
    """The authenticator asks each verifier in turn; each knows its own prefix."""
    read = tasks_pb2.TaskIdRequest(task_id=TASK)
    user = await access.authorize("Tasks.GetResult", read, _bearer("user-carol-viewer"))
    assert user.identity == "user:carol"
    task = await access.authorize("Tasks.GetResult", read, _bearer(f"tst_{TASK}"))
    assert (task.identity, task.task_id) == (TRAINER, TASK)
    with pytest.raises(ExpiredToken, match="has expired: task token for the test"):
        await access.authorize("Tasks.GetResult", read, _bearer("tst_expired"))
    with pytest.raises(Unauthenticated, match="of no kind this server knows"):
        await access.authorize("Tasks.GetResult", read, _bearer("zzz"))


async def test_a_task_token_reports_for_its_own_task_only(access: Access) -> None:
    """ReportResults needs the scheduler role, except from a token acting for that task."""
    own = tasks_pb2.ReportResultsRequest(task_id=TASK[:-1] + "1")  # its run ID counts too
    principal = await access.authorize("Tasks.ReportResults", own, _bearer(f"tst_{TASK}"))
    assert principal.identity == TRAINER
    other = tasks_pb2.ReportResultsRequest(task_id="6b0000000000010")
    with pytest.raises(PermissionDenied, match="needs the scheduler role"):
        await access.authorize("Tasks.ReportResults", other, _bearer(f"tst_{TASK}"))


async def test_a_service_account_listed_in_a_pool_may_schedule_there(access: Access) -> None:
    """Pool ACLs admit a service account identity; a pool it is not in refuses it."""
    trainer = Principal(identity=TRAINER, roles=implied("viewer"))
    access.check_pools(trainer, {"gpu"})
    with pytest.raises(PermissionDenied, match="may not schedule in pool 'gpu'"):
        access.check_pools(Principal.user("bob", "scheduler"), {"gpu"})
    await access.admit(Principal.user("alice", "scheduler"), TASK)
    await access.admit(Principal.user("root", "admin"), TASK)
    with pytest.raises(PermissionDenied):
        await access.admit(Principal.user("bob", "scheduler"), TASK)


def test_every_rpc_has_exactly_one_rule() -> None:
    """RULES names every method of every client API service, and nothing else."""
    methods = {f"{s.name}.{m.name}" for s in SERVICES for m in s.methods}
    assert methods == set(RULES)


def test_a_method_without_a_rule_stops_the_server_from_starting() -> None:
    """guarded() refuses a service with a method the rules do not know."""
    service = tasks_pb2.DESCRIPTOR.services_by_name["Tasks"]
    rules = {k: v for k, v in RULES.items() if k != "Tasks.NewTask"}
    config = LiveConfig(ROOT / "configs", clock=FakeClock())

    async def no_reads(task_id: str) -> TaskRequest:
        raise AssertionError("nothing is read at startup")

    partial = Access(Authenticator([], lambda: ""), config, no_reads, rules)
    with pytest.raises(KeyError, match=r"Tasks\.NewTask has no rule"):
        guard.guarded(service, object(), partial)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("[::1]", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("drover.example.com", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    """Only loopback addresses and "localhost" count as loopback."""
    assert is_loopback(host) is loopback


def test_anonymous_writes_beyond_loopback_are_flagged_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The quickstart's anonymous scheduling warns when the server listens on a network."""
    assert exposure_warning(["127.0.0.1", "::1"], "scheduler") == ""
    assert exposure_warning(["0.0.0.0"], "viewer") == ""
    assert exposure_warning(["0.0.0.0"], "") == ""
    with caplog.at_level(logging.WARNING, logger="drover.auth"):
        assert warn_if_exposed(["127.0.0.1", "0.0.0.0"], "scheduler") is True
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert "the scheduler role" in text
    assert "listens on 0.0.0.0" in text
    assert "127.0.0.1," not in text
    assert "drover token create" in text


async def test_the_server_warns_at_start_when_it_listens_beyond_loopback(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the quickstart config and a listening address of 0.0.0.0, start-up warns."""
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", configs, ignore=shutil.ignore_patterns("examples"))
    options = ServerOptions(
        state_dir=tmp_path / "state",
        config_dir=configs,
        server_url="http://127.0.0.1:1",
        config_poll_secs=0,
        sweep_secs=0,
        listen_host="0.0.0.0",
    )
    with caplog.at_level(logging.WARNING, logger="drover.auth"):
        app = await create_app(options, clock=FakeClock())
    # The socket itself stays on loopback: only the option says 0.0.0.0.
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    await client.close()
    assert any(
        "anonymous writes are open beyond loopback" in r.getMessage() for r in caplog.records
    )


async def test_several_calls_are_authorized_with_one_authentication(
    access: Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    """authorize_all checks the credentials once, then each call's rule; any refusal
    refuses all, and no calls at all is just the authenticated caller."""
    seen: list[Mapping[str, str]] = []
    authenticate = access._authenticator.authenticate

    async def counting(headers: Mapping[str, str]) -> Principal:
        seen.append(headers)
        return await authenticate(headers)

    monkeypatch.setattr(access._authenticator, "authenticate", counting)
    read = tasks_pb2.TaskIdRequest(task_id=TASK)
    reads = ["Tasks.GetResult", "Tasks.GetRequest", "Tasks.GetStdout"]
    viewer = await access.authorize_all(reads, read, _bearer("user-carol-viewer"))
    assert viewer.identity == "user:carol"
    assert len(seen) == 1
    with pytest.raises(PermissionDenied, match=r"Tasks\.CancelTask needs the scheduler role"):
        await access.authorize_all([*reads, "Tasks.CancelTask"], read, _bearer("user-carol-viewer"))
    assert len(seen) == 2
    assert (await access.authorize_all([], read, _bearer("user-carol-viewer"))) == viewer
