"""The client API servicers: one method per RPC, each a thin call into a service.

The same objects serve HTTP/JSON (server/api/transcoder.py) and gRPC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Protocol

from google.api import httpbody_pb2
from google.protobuf import timestamp_pb2

from protos.api import bots_pb2, common_pb2, server_pb2, tasks_pb2
from server import dimensions
from server.api import convert
from server.api.transcoder import CallContext
from server.botcode import BotCode
from server.clock import Clock
from server.config.model import ConfigSource
from server.errors import InvalidRequest
from server.model import BotQuery, TaskQuery, TaskRequest, TaskResult, TaskState
from server.scheduler import summary
from server.scheduler.batch import MAX_BATCH, BatchService, Operation
from server.scheduler.fleet import FleetService
from server.scheduler.pending import PendingService
from server.scheduler.tasks import TaskService

DEFAULT_PAGE = 100
# The requests of batch RPCs: each has tags, dry_run and limit.
BatchRequest = (
    tasks_pb2.BatchRequest | tasks_pb2.BatchCancelRequest | tasks_pb2.BatchReprioritizeRequest
)


class TasksServicer:
    """drover.api.v1.Tasks."""

    def __init__(
        self, tasks: TaskService, pending: PendingService, config: ConfigSource, clock: Clock
    ) -> None:
        self._tasks = tasks
        self._pending = pending
        self._config = config
        self._clock = clock
        self._batch = BatchService(tasks, clock)

    async def NewTask(
        self, req: tasks_pb2.NewTaskRequest, ctx: CallContext
    ) -> tasks_pb2.TaskRequestMetadataResponse:
        tolerance = self._config.current.settings.bot_ping_tolerance_secs
        draft = convert.new_request(req, default_tolerance=tolerance)
        # A task calling with its own token makes a child unless it names
        # another parent, like Swarming's client does from SWARMING_TASK_ID.
        draft = dataclasses.replace(
            draft,
            authenticated_as=ctx.principal.identity,
            parent_task_id=draft.parent_task_id or ctx.principal.task_id,
        )
        request, result = await self._tasks.create(draft)
        return _metadata(request, result)

    async def GetResult(
        self, req: tasks_pb2.TaskIdRequest, ctx: CallContext
    ) -> tasks_pb2.TaskResultResponse:
        _, result, size = await self._tasks.read_output(req.task_id, 0, 1)
        return convert.result_message(result, size)

    async def GetRequest(
        self, req: tasks_pb2.TaskIdRequest, ctx: CallContext
    ) -> tasks_pb2.TaskRequestResponse:
        return convert.request_message(await self._tasks.get_request(req.task_id))

    async def GetStdout(
        self, req: tasks_pb2.TaskStdoutRequest, ctx: CallContext
    ) -> tasks_pb2.TaskStdoutResponse:
        data, result, size = await self._tasks.read_output(req.task_id, req.offset, req.length)
        return tasks_pb2.TaskStdoutResponse(
            output=data,
            state=int(result.state),  # type: ignore[arg-type]
            offset=req.offset,
            size=size,
        )

    async def StreamStdout(
        self, req: tasks_pb2.TaskStdoutRequest, ctx: CallContext
    ) -> AsyncIterator[tasks_pb2.TaskStdoutResponse]:
        offset = req.offset
        async for data, result, size in self._tasks.follow_output(req.task_id, req.offset):
            yield tasks_pb2.TaskStdoutResponse(
                output=data,
                state=int(result.state),  # type: ignore[arg-type]
                offset=offset,
                size=size,
            )
            offset += len(data)

    async def GetLog(self, req: tasks_pb2.TaskIdRequest, ctx: CallContext) -> httpbody_pb2.HttpBody:
        chunks = []
        offset = 0
        while True:
            data, _, size = await self._tasks.read_output(req.task_id, offset)
            chunks.append(data)
            offset += len(data)
            if not data or offset >= size:
                break
        return httpbody_pb2.HttpBody(
            content_type="text/plain; charset=utf-8", data=b"".join(chunks)
        )

    async def _control(self, result: TaskResult, changed: bool) -> tasks_pb2.TaskControlResponse:
        return tasks_pb2.TaskControlResponse(
            changed=changed, task_result=convert.result_message(result)
        )

    async def PauseTask(
        self, req: tasks_pb2.TaskIdRequest, ctx: CallContext
    ) -> tasks_pb2.TaskControlResponse:
        return await self._control(*await self._tasks.pause(req.task_id))

    async def ResumeTask(
        self, req: tasks_pb2.TaskIdRequest, ctx: CallContext
    ) -> tasks_pb2.TaskControlResponse:
        return await self._control(*await self._tasks.resume(req.task_id))

    async def RestartTask(
        self, req: tasks_pb2.TaskIdRequest, ctx: CallContext
    ) -> tasks_pb2.TaskControlResponse:
        return await self._control(*await self._tasks.restart(req.task_id))

    async def ReprioritizeTask(
        self, req: tasks_pb2.TaskReprioritizeRequest, ctx: CallContext
    ) -> tasks_pb2.TaskControlResponse:
        return await self._control(*await self._tasks.reprioritize(req.task_id, req.priority))

    async def RetryTask(
        self, req: tasks_pb2.TaskIdRequest, ctx: CallContext
    ) -> tasks_pb2.TaskRequestMetadataResponse:
        request, result = await self._tasks.retry(
            req.task_id, authenticated_as=ctx.principal.identity
        )
        return _metadata(request, result)

    async def GetPending(
        self, req: tasks_pb2.TaskIdRequest, ctx: CallContext
    ) -> tasks_pb2.PendingResponse:
        result, reports = await self._pending.explain(req.task_id)
        return tasks_pb2.PendingResponse(
            task_id=result.task_id,
            state=int(result.state),  # type: ignore[arg-type]
            paused=result.paused,
            slices=[
                tasks_pb2.PendingSliceInfo(
                    index=r.index,
                    current=r.current,
                    dimensions=[common_pb2.StringPair(key=k, value=v) for k, v in r.dimensions],
                    idle_bots=r.idle_bots,
                    busy_bots=r.busy_bots,
                    quarantined_bots=r.quarantined_bots,
                    dead_bots=r.dead_bots,
                    unmatched_dimensions=r.unmatched_dimensions,
                    queue_position=r.queue_position,
                    expiration_ts=convert.timestamp(r.expiration_ts),
                )
                for r in reports
            ],
        )

    async def ListTasks(
        self, req: tasks_pb2.ListTasksRequest, ctx: CallContext
    ) -> tasks_pb2.ListTasksResponse:
        page = await self._tasks.list_tasks(_task_query(req))
        return tasks_pb2.ListTasksResponse(
            items=[convert.result_message(r) for r in page.items], cursor=page.cursor
        )

    async def CountTasks(
        self, req: tasks_pb2.ListTasksRequest, ctx: CallContext
    ) -> tasks_pb2.CountTasksResponse:
        counts = await self._tasks.count(_task_query(req))
        return tasks_pb2.CountTasksResponse(count=sum(counts.values()))

    async def SummarizeTasks(
        self, req: tasks_pb2.ListTasksRequest, ctx: CallContext
    ) -> tasks_pb2.TasksSummary:
        selection = await summary.summarize(self._tasks, _task_query(req))
        return tasks_pb2.TasksSummary(
            total=selection.total,
            states=[
                tasks_pb2.StateCount(state=int(s), count=n)  # type: ignore[arg-type]
                for s, n in sorted(selection.counts.items())
            ],
            all_done=selection.all_done,
            all_succeeded=selection.all_succeeded,
        )

    async def ReportResults(
        self, req: tasks_pb2.ReportResultsRequest, ctx: CallContext
    ) -> tasks_pb2.TaskResults:
        report = convert.report_from(req, self._clock.now())
        result, merged = await self._tasks.report(req.task_id, report)
        return convert.report_message(result.task_id, merged)

    async def GetResults(
        self, req: tasks_pb2.TaskIdRequest, ctx: CallContext
    ) -> tasks_pb2.TaskResults:
        result, report = await self._tasks.get_report(req.task_id)
        return convert.report_message(result.task_id, report)

    async def ListResults(
        self, req: tasks_pb2.ListTasksRequest, ctx: CallContext
    ) -> tasks_pb2.SelectorResults:
        found = await self._tasks.select(_task_query(req), MAX_BATCH)
        items = []
        for result in found:
            _, report = await self._tasks.get_report(result.task_id)
            items.append(convert.report_message(result.task_id, report))
        return tasks_pb2.SelectorResults(items=items)

    async def _run_batch(
        self,
        op: Operation,
        req: BatchRequest,
        ctx: CallContext,
    ) -> tasks_pb2.BatchResponse:
        """Every batch RPC: the operation over the request's tag selector."""
        outcome = await self._batch.run(
            op, list(req.tags), dry_run=req.dry_run, limit=req.limit or MAX_BATCH, admit=ctx.admit
        )
        return tasks_pb2.BatchResponse(
            task_ids=outcome.task_ids, dry_run=req.dry_run, new_task_ids=outcome.new_task_ids
        )

    async def CancelTasks(
        self, req: tasks_pb2.BatchCancelRequest, ctx: CallContext
    ) -> tasks_pb2.BatchResponse:
        return await self._run_batch(self._batch.cancel(req.kill_running), req, ctx)

    async def PauseTasks(
        self, req: tasks_pb2.BatchRequest, ctx: CallContext
    ) -> tasks_pb2.BatchResponse:
        return await self._run_batch(self._batch.pause(), req, ctx)

    async def ResumeTasks(
        self, req: tasks_pb2.BatchRequest, ctx: CallContext
    ) -> tasks_pb2.BatchResponse:
        return await self._run_batch(self._batch.resume(), req, ctx)

    async def RestartTasks(
        self, req: tasks_pb2.BatchRequest, ctx: CallContext
    ) -> tasks_pb2.BatchResponse:
        return await self._run_batch(self._batch.restart(), req, ctx)

    async def RetryTasks(
        self, req: tasks_pb2.BatchRequest, ctx: CallContext
    ) -> tasks_pb2.BatchResponse:
        return await self._run_batch(self._batch.retry(ctx.principal.identity), req, ctx)

    async def ReprioritizeTasks(
        self, req: tasks_pb2.BatchReprioritizeRequest, ctx: CallContext
    ) -> tasks_pb2.BatchResponse:
        return await self._run_batch(self._batch.reprioritize(req.priority), req, ctx)

    async def CancelTask(
        self, req: tasks_pb2.TaskCancelRequest, ctx: CallContext
    ) -> tasks_pb2.CancelResponse:
        canceled, was_running = await self._tasks.cancel(req.task_id, req.kill_running)
        return tasks_pb2.CancelResponse(canceled=canceled, was_running=was_running)


def _metadata(request: TaskRequest, result: TaskResult) -> tasks_pb2.TaskRequestMetadataResponse:
    return tasks_pb2.TaskRequestMetadataResponse(
        task_id=request.task_id,
        request=convert.request_message(request),
        task_result=convert.result_message(result),
    )


def _task_query(req: tasks_pb2.ListTasksRequest) -> TaskQuery:
    """The store query of a list, count or summary request."""
    tags = [*req.tags, *([f"pool:{req.pool}"] if req.pool else [])]
    for tag in tags:
        if ":" not in tag:
            raise InvalidRequest(f"tags: {tag!r} is not of the form key:value")
    return TaskQuery(
        states=frozenset(TaskState(s) for s in req.state if s),
        tags=tags,
        bot_id=req.bot_id,
        created_after=req.start.ToNanoseconds() / 1e9 if req.HasField("start") else None,
        created_before=req.end.ToNanoseconds() / 1e9 if req.HasField("end") else None,
        limit=req.limit or DEFAULT_PAGE,
        cursor=req.cursor,
    )


def _tri(value: int) -> bool | None:
    """A NullableBool as an optional filter."""
    if value == common_pb2.TRUE:
        return True
    if value == common_pb2.FALSE:
        return False
    return None


class BotsServicer:
    """drover.api.v1.Bots."""

    def __init__(self, fleet: FleetService, tasks: TaskService, clock: Clock) -> None:
        self._fleet = fleet
        self._tasks = tasks
        self._clock = clock

    async def ListBots(
        self, req: bots_pb2.ListBotsRequest, ctx: CallContext
    ) -> bots_pb2.ListBotsResponse:
        query = BotQuery(
            dimensions=dimensions.normalize_pairs(dimensions.parse_pairs(req.dimensions)),
            quarantined=_tri(req.quarantined),
            is_dead=_tri(req.is_dead),
            is_busy=_tri(req.is_busy),
            limit=req.limit or DEFAULT_PAGE,
            cursor=req.cursor,
        )
        page = await self._fleet.list_bots(query)
        return bots_pb2.ListBotsResponse(
            items=[convert.bot_message(b, is_dead=self._fleet.is_dead(b)) for b in page.items],
            cursor=page.cursor,
            now=convert.timestamp(self._clock.now()),
        )

    async def GetBot(self, req: bots_pb2.BotRequest, ctx: CallContext) -> bots_pb2.BotInfo:
        bot = await self._fleet.get_bot(req.bot_id)
        return convert.bot_message(bot, is_dead=self._fleet.is_dead(bot))

    async def ListBotEvents(
        self, req: bots_pb2.ListBotEventsRequest, ctx: CallContext
    ) -> bots_pb2.ListBotEventsResponse:
        page = await self._fleet.list_events(req.bot_id, req.limit or DEFAULT_PAGE, req.cursor)
        return bots_pb2.ListBotEventsResponse(
            items=[convert.event_message(e) for e in page.items], cursor=page.cursor
        )

    async def TerminateBot(
        self, req: bots_pb2.BotRequest, ctx: CallContext
    ) -> bots_pb2.TerminateResponse:
        bot = await self._fleet.get_bot(req.bot_id)
        task_id = await self._tasks.terminate_bot(bot)
        await self._fleet.mark_terminating(bot.bot_id, task_id)
        return bots_pb2.TerminateResponse(task_id=task_id)

    async def QuarantineBot(
        self, req: bots_pb2.BotControlRequest, ctx: CallContext
    ) -> bots_pb2.BotInfo:
        message = req.message or "quarantined by an admin"
        bot = await self._fleet.set_admin_state(req.bot_id, quarantine=message)
        return convert.bot_message(bot, is_dead=self._fleet.is_dead(bot))

    async def UnquarantineBot(self, req: bots_pb2.BotRequest, ctx: CallContext) -> bots_pb2.BotInfo:
        bot = await self._fleet.set_admin_state(req.bot_id, quarantine="")
        return convert.bot_message(bot, is_dead=self._fleet.is_dead(bot))

    async def SetBotMaintenance(
        self, req: bots_pb2.BotControlRequest, ctx: CallContext
    ) -> bots_pb2.BotInfo:
        bot = await self._fleet.set_admin_state(req.bot_id, maintenance=req.message)
        return convert.bot_message(bot, is_dead=self._fleet.is_dead(bot))


class ConfigStatus(ConfigSource, Protocol):
    """A config source that also knows the last refused edit (LiveConfig)."""

    @property
    def error(self) -> str: ...


class ServerServicer:
    """drover.api.v1.Server."""

    def __init__(self, config: ConfigStatus, botcode: BotCode, server_version: str) -> None:
        self._config = config
        self._botcode = botcode
        self._server_version = server_version

    async def GetDetails(
        self, req: server_pb2.ServerDetailsRequest, ctx: CallContext
    ) -> server_pb2.ServerDetails:
        snapshot = self._config.current
        loaded = timestamp_pb2.Timestamp()
        loaded.FromNanoseconds(int(snapshot.loaded_ts * 1e9))
        return server_pb2.ServerDetails(
            server_version=self._server_version,
            bot_version=self._botcode.stable.digest,
            canary_bot_version=self._botcode.canary.digest if self._botcode.canary else "",
            config_revision=snapshot.revision,
            config_loaded_ts=loaded,
            config_error=self._config.error,
        )
