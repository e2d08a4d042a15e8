"""Who may make which client API call: the one table of rules, and the policy applying it.

Each RPC needs a role (viewer to read, scheduler to create and control
tasks, admin for bots and tokens), declared once in RULES below; the guard
(server/api/guard.py) applies it to every call over both transports. Calls
that create or change tasks are also subject to the pool ACLs of pools.cfg
(`schedulers`): the scope of a rule says where the pools come from.

A refusal says what is missing: 401 when credentials would help (no token,
or a bad one), 403 when the caller is known and lacks a role or a pool.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import NoReturn

from google.protobuf import message

from protos.api import tasks_pb2
from server import ids
from server.auth.authenticator import Authenticator
from server.auth.principal import (
    ADMIN,
    SCHEDULER,
    SERVICE_ACCOUNT_PREFIX,
    VIEWER,
    Principal,
    matches,
)
from server.config.model import ConfigSource
from server.errors import PermissionDenied, Unauthenticated
from server.model import TaskRequest


class Scope(enum.Enum):
    """Which pools' ACLs a call must pass."""

    # No pool is involved.
    NONE = "none"
    # The pools the new task's slices ask for.
    NEW_TASK = "new_task"
    # The pools of the task the request's `task_id` names.
    TASK = "task"
    # The pools of each task a batch selects, checked by the batch path
    # (server/scheduler/batch.py) before it changes any, through `admit`.
    SELECTOR = "selector"


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a call needs: a role ("" for none), the pools in scope, and whether a
    principal acting for a task may make it for that task whatever its roles."""

    role: str
    scope: Scope = Scope.NONE
    own_task: bool = False


READ = Rule(VIEWER)
READ_TASK = Rule(VIEWER, own_task=True)
CONTROL = Rule(SCHEDULER, Scope.TASK)
BATCH = Rule(SCHEDULER, Scope.SELECTOR)
ADMINISTER = Rule(ADMIN)

# Every RPC of the client API, by "<Service>.<Method>". A method missing here
# makes the server refuse to start (guard.guarded), so none is ever open by mistake.
RULES: Mapping[str, Rule] = {
    "Tasks.NewTask": Rule(SCHEDULER, Scope.NEW_TASK),
    "Tasks.GetResult": READ_TASK,
    "Tasks.GetRequest": READ,
    "Tasks.GetStdout": READ,
    "Tasks.StreamStdout": READ,
    "Tasks.GetLog": READ,
    "Tasks.GetPending": READ,
    "Tasks.ListTasks": READ,
    "Tasks.CountTasks": READ,
    "Tasks.SummarizeTasks": READ,
    "Tasks.GetResults": READ_TASK,
    "Tasks.ListResults": READ,
    "Tasks.CancelTask": CONTROL,
    "Tasks.PauseTask": CONTROL,
    "Tasks.ResumeTask": CONTROL,
    "Tasks.RestartTask": CONTROL,
    "Tasks.RetryTask": CONTROL,
    "Tasks.ReprioritizeTask": CONTROL,
    "Tasks.ReportResults": Rule(SCHEDULER, Scope.TASK, own_task=True),
    "Tasks.CancelTasks": BATCH,
    "Tasks.PauseTasks": BATCH,
    "Tasks.ResumeTasks": BATCH,
    "Tasks.RestartTasks": BATCH,
    "Tasks.RetryTasks": BATCH,
    "Tasks.ReprioritizeTasks": BATCH,
    "Bots.ListBots": READ,
    "Bots.GetBot": READ,
    "Bots.ListBotEvents": READ,
    "Bots.QuarantineBot": ADMINISTER,
    "Bots.UnquarantineBot": ADMINISTER,
    "Bots.SetBotMaintenance": ADMINISTER,
    "Bots.TerminateBot": ADMINISTER,
    "Server.GetDetails": READ,
    "Auth.CreateToken": ADMINISTER,
    "Auth.ListTokens": ADMINISTER,
    "Auth.RevokeToken": ADMINISTER,
    # Anyone may ask who they are; a bad token is still refused.
    "Auth.WhoAmI": Rule(""),
}

# Reads a task's request (TaskService.get_request): where its pools come from.
RequestReader = Callable[[str], Awaitable[TaskRequest]]
# Raises PermissionDenied (or Unauthenticated) unless the caller may change the task.
Admit = Callable[[str], Awaitable[None]]


def new_task_pools(request: message.Message) -> frozenset[str]:
    """The pools a NewTaskRequest's slices ask for (none when it names none)."""
    assert isinstance(request, tasks_pb2.NewTaskRequest)
    slices = [s.properties for s in request.task_slices] or [request.properties]
    return frozenset(d.value for p in slices for d in p.dimensions if d.key == "pool")


class Access:
    """Applies RULES and the pool ACLs of the current pools.cfg to callers."""

    def __init__(
        self,
        authenticator: Authenticator,
        config: ConfigSource,
        read_request: RequestReader,
        rules: Mapping[str, Rule] = RULES,
    ) -> None:
        self._authenticator = authenticator
        self._config = config
        self._read_request = read_request
        self.rules = rules

    async def authorize(
        self, rpc: str, request: message.Message, headers: Mapping[str, str]
    ) -> Principal:
        """The caller of `rpc`, once it may make the call. Raises Unauthenticated or
        PermissionDenied saying what is missing.

        Checks the rule's role and the pools of scopes NEW_TASK and TASK; for
        SELECTOR the batch path checks each task through `admit`.
        """
        return await self.authorize_all((rpc,), request, headers)

    async def authorize_all(
        self, rpcs: Iterable[str], request: message.Message, headers: Mapping[str, str]
    ) -> Principal:
        """The caller, once it may make each of `rpcs` with `request` (as authorize says);
        its credentials are checked once. With no `rpcs`, just the authenticated caller."""
        principal = await self._authenticator.authenticate(headers)
        for rpc in rpcs:
            await self._permit(rpc, request, principal)
        return principal

    async def _permit(self, rpc: str, request: message.Message, principal: Principal) -> None:
        rule = self.rules[rpc]
        if rule.own_task and _acts_for(principal, request):
            return
        if rule.role == SCHEDULER and await self._pools_name(principal, rule, request):
            return
        if rule.role and not principal.has_role(rule.role):
            held = principal.top_role
            _deny(
                principal,
                f"{rpc} needs the {rule.role} role and {_who(principal)} "
                f"{'hold' if principal.is_anonymous else 'holds'} "
                f"{f'the {held} role' if held else 'no role'}",
            )
        if rule.scope is Scope.NEW_TASK:
            self.check_pools(principal, new_task_pools(request))
        elif rule.scope is Scope.TASK:
            await self.admit(principal, str(getattr(request, "task_id", "")))

    async def _pools_name(self, principal: Principal, rule: Rule, request: message.Message) -> bool:
        """True when a service account is named, explicitly, by every pool in scope.

        Such an entry schedules without the scheduler role: it is how an admin
        lets a task's own token create and control tasks in chosen pools. A
        role entry ("role:scheduler") does not count, and neither does an
        empty ACL: a task's token holds only the viewer role.
        """
        if not principal.identity.startswith(SERVICE_ACCOUNT_PREFIX):
            return False
        if rule.scope is Scope.NEW_TASK:
            pools: Iterable[str] = new_task_pools(request)
        elif rule.scope is Scope.TASK:
            task_id = str(getattr(request, "task_id", ""))
            if not ids.is_task_id(task_id):
                return False
            pools = {s.properties.pool for s in (await self._read_request(task_id)).slices}
        else:
            return False
        snapshot = self._config.current
        named = [snapshot.pool(name) for name in pools]
        return bool(named) and all(
            pool is not None and principal.identity in pool.schedulers for pool in named
        )

    async def admit(self, principal: Principal, task_id: str) -> None:
        """Raises unless `principal` may create or change tasks in every pool of the task.

        The task is only read when a pool ACL could refuse the caller.
        """
        acls = (p.schedulers for p in self._config.current.pools.pool)
        if principal.has_role(ADMIN) or not any(acls):
            return
        request = await self._read_request(task_id)
        self.check_pools(principal, {s.properties.pool for s in request.slices})

    def check_pools(self, principal: Principal, pools: Iterable[str]) -> None:
        """Raises unless `principal` may create or change tasks in each of `pools`."""
        if principal.has_role(ADMIN):
            return
        snapshot = self._config.current
        for name in sorted(pools):
            pool = snapshot.pool(name)
            entries = list(pool.schedulers) if pool is not None else []
            if entries and not any(matches(principal, e) for e in entries):
                _deny(
                    principal,
                    f"{_who(principal)} may not schedule in pool {name!r}: "
                    f"pools.cfg admits only {', '.join(entries)} (and admins)",
                )


def _who(principal: Principal) -> str:
    return "callers without a token" if principal.is_anonymous else principal.identity


def _deny(principal: Principal, reason: str) -> NoReturn:
    """401 for an anonymous caller (a token could help), else 403."""
    if principal.is_anonymous:
        raise Unauthenticated(f"{reason}; send an API token (Authorization: Bearer drv_...)")
    raise PermissionDenied(reason)


def _acts_for(principal: Principal, request: message.Message) -> bool:
    """True when a task's own token calls about that task (a run ID counts)."""
    task_id = str(getattr(request, "task_id", ""))
    if not principal.task_id or not ids.is_task_id(task_id):
        return False
    return ids.split_run_id(task_id)[0] == principal.task_id
