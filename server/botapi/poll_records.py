"""What a poll records: the bot's record from its report, and its dispatch.

The bot's record follows its report (PROTOCOL.md 1.5): reported dimensions
under the ones bots.cfg forces, quarantine and maintenance from its
dimensions and state. When the poll gets its bot a task (PROTOCOL.md 1.5
step 10, 1.6), the claim of the task, the bot's record (now busy with the
run), its `request_task` (or `bot_terminate`) event and the poll's answer
for replay are one Store operation (Store.dispatch_next): a crash never
leaves a task reserved for a bot with no answer a retried poll could get
back, and the poll costs one transaction. `Dispatcher.record` makes those records from
the claimed task; it is pure, as dispatch_next requires.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from server.botapi.messages import BotCredentials, BotReport, PollRequest
from server.config.model import BotGroup
from server.model import Bot, BotDimensions, BotEvent, TaskRequest, TaskResult, evolve
from server.scheduler import manifest
from server.store.base import Dispatch, PollReply


def overlay(reported: BotDimensions, group: BotGroup, bot_id: str) -> BotDimensions:
    """The bot's effective dimensions: bots.cfg keys win over reported ones."""
    merged = dict(reported)
    merged.update(group.dimensions)
    merged["id"] = [bot_id]
    return merged


def quarantine_reason(report: BotReport) -> str:
    """Why the bot's own report says it must not get tasks, or ''."""
    if report.dimensions_error:
        return f"invalid dimensions: {report.dimensions_error}"
    if "quarantined" in report.dimensions:
        return "the bot has the 'quarantined' dimension"
    value = report.state.get("quarantined")
    if value:
        return value if isinstance(value, str) else "the bot reported itself quarantined"
    return ""


def maintenance_reason(report: BotReport) -> str:
    """The bot's maintenance message, or ''."""
    value = report.state.get("maintenance")
    if not value:
        return ""
    return value if isinstance(value, str) else "maintenance"


def idle_reason(bot: Bot) -> str:
    """Why the bot gets no task, quarantine before maintenance, admin before bot; '' if none."""
    quarantine = "; ".join(m for m in (bot.admin_quarantine, bot.quarantined) if m)
    if quarantine:
        return f"quarantined: {quarantine}"
    maintenance = bot.admin_maintenance or bot.maintenance
    return f"in maintenance: {maintenance}" if maintenance else ""


def polled(
    existing: Bot | None,
    req: PollRequest,
    creds: BotCredentials,
    group: BotGroup,
    identity: str,
    now: float,
) -> Bot:
    """The bot's record after a poll, idle; invalid reported dimensions are not stored."""
    existing = existing or Bot(bot_id=req.bot_id, first_seen_ts=now)
    dims = existing.dimensions
    if not req.report.dimensions_error:
        dims = overlay(req.report.dimensions, group, req.bot_id)
    return evolve(
        existing,
        group=group.name,
        dimensions=dims,
        state=req.report.state,
        version=req.report.version,
        last_seen_ts=now,
        external_ip=creds.remote_ip,
        authenticated_as=identity,
        quarantined=quarantine_reason(req.report),
        maintenance=maintenance_reason(req.report),
        task_id="",
        task_name="",
    )


@dataclasses.dataclass(frozen=True)
class Dispatcher:
    """Everything a poll knows before its claim that its dispatch records."""

    # The bot's record as this poll stores it (idle).
    bot: Bot
    # The poll's request_uuid ("" when the bot sent none: nothing to replay).
    request_uuid: str
    # Until when a retry of the poll gets the same answer.
    replay_until: float
    # The session token the answer carries.
    session: str
    server_url: str
    # The bots.cfg system account of the bot's group, for the manifest.
    system_account: str

    def record(self, result: TaskResult, request: TaskRequest, *, now: float) -> Dispatch:
        """The bot's record, its event and the poll's answer for the task just claimed."""
        bot = self.bot
        run_id = result.run_id
        answer: dict[str, Any]
        if request.is_termination:
            event_type = "bot_terminate"
            answer = {"cmd": "terminate", "task_id": run_id}
        else:
            event_type = "request_task"
            answer = {
                "cmd": "run",
                "manifest": manifest.build(
                    request, result, bot, self.server_url, self.system_account
                ),
            }
        answer["session"] = self.session
        return Dispatch(
            bot=evolve(bot, task_id=run_id, task_name=request.name),
            event=BotEvent(bot_id=bot.bot_id, ts=now, event_type=event_type, task_id=run_id),
            reply=PollReply(bot.bot_id, self.request_uuid, answer, self.replay_until),
        )
