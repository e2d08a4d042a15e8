"""Conversion between client API messages and domain records.

Defaults for fields a caller left out are applied here, where proto field
presence is known; `server.scheduler.requests.validate` then checks ranges.
"""

from __future__ import annotations

import json

from google.protobuf import timestamp_pb2

from protos.api import bots_pb2, common_pb2, tasks_pb2
from server.model import (
    Bot,
    BotDimensions,
    BotEvent,
    CacheEntry,
    LintResult,
    TaskProperties,
    TaskReport,
    TaskRequest,
    TaskResult,
    TaskSlice,
    UnitResult,
    WorkMessage,
)
from server.scheduler import requests


def new_request(msg: tasks_pb2.NewTaskRequest, *, default_tolerance: int) -> TaskRequest:
    """Builds a draft TaskRequest (not yet validated) from a NewTaskRequest."""
    slices = [
        TaskSlice(
            properties=_properties(s.properties),
            expiration_secs=s.expiration_secs or requests.DEFAULT_EXPIRATION_SECS,
            wait_for_capacity=s.wait_for_capacity,
        )
        for s in msg.task_slices
    ]
    if not slices and msg.HasField("properties"):
        slices = [
            TaskSlice(
                properties=_properties(msg.properties),
                expiration_secs=msg.expiration_secs or requests.DEFAULT_EXPIRATION_SECS,
            )
        ]
    return TaskRequest(
        task_id="",
        created_ts=0.0,
        name=msg.name,
        priority=msg.priority if msg.HasField("priority") else requests.DEFAULT_PRIORITY,
        slices=slices,
        tags=list(msg.tags),
        user=msg.user,
        service_account=msg.service_account or "none",
        parent_task_id=msg.parent_task_id,
        bot_ping_tolerance_secs=msg.bot_ping_tolerance_secs or default_tolerance,
        request_uuid=msg.request_uuid,
        max_retries=msg.max_retries,
    )


def _properties(msg: tasks_pb2.TaskProperties) -> TaskProperties:
    return TaskProperties(
        command=list(msg.command),
        dimensions=[(p.key, p.value) for p in msg.dimensions],
        env={p.key: p.value for p in msg.env},
        env_prefixes={p.key: list(p.value) for p in msg.env_prefixes},
        relative_cwd=msg.relative_cwd,
        execution_timeout_secs=msg.execution_timeout_secs
        or requests.DEFAULT_EXECUTION_TIMEOUT_SECS,
        io_timeout_secs=msg.io_timeout_secs,
        grace_period_secs=msg.grace_period_secs
        if msg.HasField("grace_period_secs")
        else requests.DEFAULT_GRACE_PERIOD_SECS,
        idempotent=msg.idempotent,
        caches=[CacheEntry(name=c.name, path=c.path) for c in msg.caches],
        outputs=list(msg.outputs),
        secret_bytes=msg.secret_bytes,
    )


def report_from(msg: tasks_pb2.ReportResultsRequest, now: float) -> TaskReport:
    """The domain report of a ReportResults request."""
    return TaskReport(
        unit=[
            UnitResult(
                name=u.name,
                result=u.result,
                namespace=u.namespace,
                engine=u.engine,
                duration=u.duration if u.HasField("duration") else None,
                path=u.path,
                details=u.details,
            )
            for u in msg.unit
        ],
        lint=[
            LintResult(
                name=lint.name,
                code=lint.code,
                severity=lint.severity,
                path=lint.path,
                line=lint.line if lint.HasField("line") else None,
                char=lint.char if lint.HasField("char") else None,
                description=lint.description,
            )
            for lint in msg.lint
        ],
        work=[WorkMessage(ts=now, message=msg.work)] if msg.work else [],
    )


def report_message(task_id: str, report: TaskReport) -> tasks_pb2.TaskResults:
    """A task's structured results."""
    return tasks_pb2.TaskResults(
        task_id=task_id,
        unit=[
            tasks_pb2.UnitResult(
                name=u.name,
                result=u.result,
                namespace=u.namespace,
                engine=u.engine,
                duration=u.duration,
                path=u.path,
                details=u.details,
            )
            for u in report.unit
        ],
        lint=[
            tasks_pb2.LintResult(
                name=lint.name,
                code=lint.code,
                severity=lint.severity,
                path=lint.path,
                line=lint.line,
                char=lint.char,
                description=lint.description,
            )
            for lint in report.lint
        ],
        work=[tasks_pb2.WorkMessage(ts=timestamp(w.ts), message=w.message) for w in report.work],
    )


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp message, or None for an unset time."""
    if seconds is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def list_pairs(dims: BotDimensions) -> list[common_pb2.StringListPair]:
    """Bot dimensions as sorted StringListPairs."""
    return [common_pb2.StringListPair(key=k, value=v) for k, v in sorted(dims.items())]


def request_message(request: TaskRequest) -> tasks_pb2.TaskRequestResponse:
    """The request as stored (secret bytes are never shown)."""
    msg = tasks_pb2.TaskRequestResponse(
        task_id=request.task_id,
        name=request.name,
        priority=request.priority,
        tags=request.tags,
        user=request.user,
        service_account=request.service_account,
        parent_task_id=request.parent_task_id,
        bot_ping_tolerance_secs=request.bot_ping_tolerance_secs,
        request_uuid=request.request_uuid,
        max_retries=request.max_retries,
        created_ts=timestamp(request.created_ts),
        expiration_secs=sum(s.expiration_secs for s in request.slices),
        authenticated=request.authenticated_as,
    )
    for s in request.slices:
        p = s.properties
        props = tasks_pb2.TaskProperties(
            command=p.command,
            relative_cwd=p.relative_cwd,
            env=[common_pb2.StringPair(key=k, value=v) for k, v in sorted(p.env.items())],
            env_prefixes=[
                common_pb2.StringListPair(key=k, value=v) for k, v in sorted(p.env_prefixes.items())
            ],
            dimensions=[common_pb2.StringPair(key=k, value=v) for k, v in p.dimensions],
            execution_timeout_secs=p.execution_timeout_secs,
            io_timeout_secs=p.io_timeout_secs,
            grace_period_secs=p.grace_period_secs,
            idempotent=p.idempotent,
            caches=[tasks_pb2.CacheEntry(name=c.name, path=c.path) for c in p.caches],
            outputs=p.outputs,
        )
        msg.task_slices.append(
            tasks_pb2.TaskSlice(
                properties=props,
                expiration_secs=s.expiration_secs,
                wait_for_capacity=s.wait_for_capacity,
            )
        )
    return msg


def result_message(result: TaskResult, output_size: int = 0) -> tasks_pb2.TaskResultResponse:
    """The user-visible result of a task."""
    return tasks_pb2.TaskResultResponse(
        task_id=result.task_id,
        run_id=result.run_id if result.try_number else "",
        state=int(result.state),  # type: ignore[arg-type]
        bot_id=result.bot_id,
        bot_dimensions=list_pairs(result.bot_dimensions),
        bot_version=result.bot_version,
        created_ts=timestamp(result.created_ts),
        started_ts=timestamp(result.started_ts),
        completed_ts=timestamp(result.completed_ts),
        abandoned_ts=timestamp(result.abandoned_ts),
        modified_ts=timestamp(result.modified_ts),
        duration=result.duration or 0.0,
        exit_code=result.exit_code or 0,
        failure=result.failure,
        internal_failure=result.internal_failure,
        cost_usd=result.cost_usd,
        deduped_from=result.deduped_from,
        current_task_slice=result.current_slice,
        tags=result.tags,
        name=result.name,
        user=result.user,
        try_number=result.try_number,
        priority=result.priority,
        killing=result.killing,
        paused=result.paused,
        hard_timeout=result.hard_timeout,
        io_timeout=result.io_timeout,
        error=result.error,
        output_size=output_size,
        retry_of=result.retry_of,
    )


def bot_message(bot: Bot, *, is_dead: bool) -> bots_pb2.BotInfo:
    """What the API shows of a bot."""
    return bots_pb2.BotInfo(
        bot_id=bot.bot_id,
        task_id=bot.task_id,
        task_name=bot.task_name,
        external_ip=bot.external_ip,
        authenticated_as=bot.authenticated_as,
        first_seen_ts=timestamp(bot.first_seen_ts),
        last_seen_ts=timestamp(bot.last_seen_ts),
        is_dead=is_dead,
        quarantined=bool(bot.quarantined or bot.admin_quarantine),
        quarantine_message="; ".join(m for m in (bot.admin_quarantine, bot.quarantined) if m),
        maintenance_msg=bot.admin_maintenance or bot.maintenance,
        dimensions=list_pairs(bot.dimensions),
        version=bot.version,
        state=json.dumps(bot.state, sort_keys=True),
        session_id=bot.session_id,
        bot_group=bot.group,
        termination_requested=bool(bot.termination_task_id),
    )


def event_message(event: BotEvent) -> bots_pb2.BotEvent:
    """One bot event."""
    return bots_pb2.BotEvent(
        ts=timestamp(event.ts),
        event_type=event.event_type,
        message=event.message,
        dimensions=list_pairs(event.dimensions),
        state=json.dumps(event.state, sort_keys=True),
        version=event.version,
        task_id=event.task_id,
        quarantined=bool(event.quarantined),
        maintenance_msg=event.maintenance,
    )
