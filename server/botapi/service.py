"""The bot service: handshake, poll and event (PROTOCOL.md 1.4, 1.5, 1.7).

The poll decision follows the reference order: credentials, replay, update
(before any session check, so a broken bot can always heal), session,
config change, quarantine and maintenance, then a task or a sleep. Session
problems answer `bot_restart`, never 401: a stock bot does not re-handshake
by itself (PROTOCOL.md 0.2.4 S2).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from typing import Any

from prometheus_client import CollectorRegistry

from protos.internal import session_pb2
from server.auth import session
from server.auth.session import BadSessionToken
from server.botapi.context import BotApiContext
from server.botapi.messages import (
    BotCredentials,
    BotReport,
    EventRequest,
    HandshakeRequest,
    PollRequest,
)
from server.botapi.poll_records import (
    Dispatcher,
    idle_reason,
    maintenance_reason,
    overlay,
    polled,
    quarantine_reason,
)
from server.config.model import Settings
from server.errors import Unauthenticated
from server.metrics import BotCallMetrics, Stopwatch
from server.model import Bot, BotEvent, TaskRequest, TaskResult, evolve
from server.scheduler import transitions
from server.scheduler.waiters import NEW_QUEUE, HoldTimers, PollWaiters
from server.store.base import Dispatch

log = logging.getLogger("drover.botapi")


def sleep_duration(settings: Settings, state: dict[str, Any], rng: random.Random) -> float:
    """Idle backoff (PROTOCOL.md 1.5 step 9): grows with the bot's sleep streak."""
    streak = state.get("sleep_streak")
    streak = streak if isinstance(streak, int) and streak >= 0 else 0
    if rng.random() < 0.05:
        return 1.0
    return float(min(settings.max_bot_sleep_time, 1.5 ** (min(streak, 10) + 1)))


class BotService:
    """Answers the bot calls that are not about one run."""

    def __init__(
        self,
        ctx: BotApiContext,
        waiters: PollWaiters | None = None,
        rng: random.Random | None = None,
        metrics: BotCallMetrics | None = None,
    ) -> None:
        self._ctx = ctx
        self._waiters = waiters or PollWaiters()
        self._holds = HoldTimers()
        self._rng = rng or random.Random()
        # Without the app's metrics, observations go to a registry nobody reads.
        self._metrics = metrics or BotCallMetrics(CollectorRegistry())

    @property
    def waiters(self) -> PollWaiters:
        """The held polls (for metrics and tests)."""
        return self._waiters

    @property
    def context(self) -> BotApiContext:
        """The shared dependencies (for diagnostics and tests)."""
        return self._ctx

    async def handshake(self, req: HandshakeRequest, creds: BotCredentials) -> dict[str, Any]:
        """Registers the bot and opens a session."""
        ctx = self._ctx
        now = ctx.clock.now()
        snapshot, group, identity = ctx.admit(req.bot_id, creds)
        existing = await ctx.store.get_bot(req.bot_id)
        # Reported handshake dimensions come from the bot before its hooks ran;
        # storing them would make the bot flap, so keep the last polled ones.
        base = existing.dimensions if existing else {}
        bot = Bot(
            bot_id=req.bot_id,
            group=group.name,
            dimensions=overlay(base, group, req.bot_id),
            state=req.report.state,
            version=req.report.version,
            session_id=req.session_id,
            first_seen_ts=existing.first_seen_ts if existing else now,
            last_seen_ts=now,
            external_ip=creds.remote_ip,
            authenticated_as=identity,
            quarantined=quarantine_reason(req.report),
            maintenance=maintenance_reason(req.report),
            admin_quarantine=existing.admin_quarantine if existing else "",
            admin_maintenance=existing.admin_maintenance if existing else "",
        )
        await ctx.store.put_bot(bot)
        # A retried handshake reuses its session ID: record the connection once.
        if existing is None or existing.session_id != req.session_id:
            await self._connected(bot, now)
        sess = session.new_session(
            req.bot_id,
            req.session_id or "legacy",
            group,
            now=now,
            lifetime_secs=snapshot.settings.session_lifetime_secs,
            config_revision=snapshot.revision,
            server_version=ctx.server_version,
        )
        reply: dict[str, Any] = {
            "bot_config_name": group.bot_config_script or "bot_config.py",
            "bot_config_rev": snapshot.revision,
            "bot_group_cfg": {"dimensions": group.dimensions},
            "bot_version": ctx.botcode.for_bot(req.bot_id).digest,
            "server_version": ctx.server_version,
            "session": session.marshal(sess, ctx.keys),
        }
        if group.bot_config_script_body:
            reply["bot_config"] = group.bot_config_script_body
        return reply

    async def poll(self, req: PollRequest, creds: BotCredentials) -> dict[str, Any]:
        """Tells the bot what to do next; the time it took, less any hold, is observed."""
        watch = self._metrics.stopwatch()
        reply = await self._answer(req, creds, watch)
        self._metrics.observe_poll(reply, watch)
        return reply

    async def _answer(
        self, req: PollRequest, creds: BotCredentials, watch: Stopwatch
    ) -> dict[str, Any]:
        """The poll's answer, decided in the order the module docstring gives."""
        ctx = self._ctx
        now = ctx.clock.now()
        snapshot, group, identity = ctx.admit(req.bot_id, creds)
        # The bot is read with the replay: the decision below needs it unless
        # the session is bad, and one read serves both.
        replay, existing = await ctx.store.read_poll(req.bot_id, req.request_uuid)
        if replay is not None:
            return replay
        settings = snapshot.settings
        expected = ctx.botcode.for_bot(req.bot_id).digest
        sess: session_pb2.Session | None = None
        problem = ""
        try:
            sess = ctx.open_session(req.session, req.bot_id)
            if session.is_expired(sess, now):
                problem = "session expired"
        except BadSessionToken as e:
            problem = str(e)
        if settings.force_bots_to_sleep_and_not_run_task:
            reply = self._sleep(
                settings.max_bot_sleep_time,
                quarantined=True,
                message="every bot sleeps (settings: force_bots_to_sleep_and_not_run_task)",
            )
        elif req.report.version != expected:
            reply = {"cmd": "update", "version": expected}
        elif problem or sess is None:
            return {"cmd": "bot_restart", "message": f"Please restart: {problem}"}
        elif sess.handshake_config_hash != group.handshake_config_hash():
            reply = {"cmd": "bot_restart", "message": "pick up new bots.cfg config"}
        else:
            reply = {}
        if problem or sess is None:
            # Nothing is stored for a caller without a valid session.
            return reply
        bot = polled(existing, req, creds, group, identity, now)
        # The bot's token comes back as it is until half its life is gone:
        # re-signing it on every poll cost a tenth of an idle poll.
        token = ctx.refreshed_token(sess, now) or req.session or ""
        if reply:
            await self._save(existing, bot)
        else:
            reply = await self._work_or_sleep(existing, bot, req, settings, now, token, watch)
        reply["session"] = token
        return reply

    async def event(self, req: EventRequest, creds: BotCredentials) -> dict[str, Any]:
        """Records a bot event; a state in it updates the bot's quarantine and maintenance."""
        ctx = self._ctx
        now = ctx.clock.now()
        bot_id = _bot_id_of(req.report)
        try:
            sess = ctx.open_session(req.session, bot_id or _session_bot_id(ctx, req.session))
        except BadSessionToken as e:
            raise Unauthenticated(str(e)) from e
        ctx.recheck_credentials(sess, creds)
        bot = await ctx.store.get_bot(sess.bot_id)
        if bot is not None and req.report.state:
            bot = dataclasses.replace(
                bot,
                state=req.report.state,
                quarantined=quarantine_reason(req.report),
                maintenance=maintenance_reason(req.report),
                last_seen_ts=now,
            )
            await ctx.store.put_bot(bot)
        await ctx.store.add_bot_event(
            BotEvent(
                bot_id=sess.bot_id,
                ts=now,
                event_type=req.event,
                message=req.message[:4096],
                dimensions=req.report.dimensions,
                state=req.report.state,
                version=req.report.version,
                task_id=req.task_id,
                quarantined=quarantine_reason(req.report),
                maintenance=maintenance_reason(req.report),
            )
        )
        if req.event == "bot_error":
            log.error("bot %s reported an error: %s", sess.bot_id, req.message[:4096])
        return {}

    async def _connected(self, bot: Bot, now: float) -> None:
        await self._ctx.store.add_bot_event(
            BotEvent(
                bot_id=bot.bot_id,
                ts=now,
                event_type="bot_connected",
                dimensions=bot.dimensions,
                state=bot.state,
                version=bot.version,
                quarantined=bot.quarantined,
                maintenance=bot.maintenance,
            )
        )

    async def _save(self, existing: Bot | None, bot: Bot) -> None:
        """Stores the polled record: a touch when only its last-seen time and state changed."""
        if (
            existing is not None
            and evolve(existing, last_seen_ts=bot.last_seen_ts, state=bot.state) == bot
        ):
            await self._ctx.store.touch_bot(bot)
        else:
            await self._ctx.store.put_bot(bot)

    async def _work_or_sleep(
        self,
        existing: Bot | None,
        bot: Bot,
        req: PollRequest,
        settings: Settings,
        now: float,
        token: str,
        watch: Stopwatch,
    ) -> dict[str, Any]:
        """Hands the bot a task it can run, or tells it to sleep.

        The bot's record is written once: with the task, in the claim's
        transaction (Store.dispatch_next), or idle before the poll is held.
        """
        reason = idle_reason(bot)
        if reason:
            await self._save(existing, bot)
            quarantined = bool(bot.quarantined or bot.admin_quarantine)
            return self._sleep(settings.max_bot_sleep_time, quarantined=quarantined, message=reason)
        ctx = self._ctx
        dispatcher = Dispatcher(
            bot,
            request_uuid=req.request_uuid,
            replay_until=now + settings.poll_replay_secs,
            session=token,
            server_url=ctx.server_url,
            system_account=ctx.system_account(bot.bot_id),
        )
        dispatched = await self._reserve(dispatcher, settings, now)
        if dispatched is None:
            await self._save(existing, bot)
            if settings.long_poll_secs > 0:
                dispatched = await self._hold(dispatcher, settings, watch)
        if dispatched is None:
            return self._sleep(sleep_duration(settings, req.report.state, self._rng))
        return dispatched[1].reply.reply

    async def _hold(
        self, dispatcher: Dispatcher, settings: Settings, watch: Stopwatch
    ) -> tuple[TaskResult, Dispatch] | None:
        """Holds an idle bot's poll until a task for it arrives or the hold ends.

        The hold is measured on the event loop's clock, not the injected one:
        it is about the transport (a stock bot drops a request after 60 s).
        It ends on HoldTimers' grid, up to a tick early, with the other holds
        of that tick. Tasks created by other replicas wake it too
        (server/replicas.py).
        """
        bot = dispatcher.bot
        deadline = self._holds.deadline(settings.long_poll_secs)
        offer = functools.partial(self._handed_over, dispatcher, settings)
        while True:
            keys = self._ctx.queues.queues_for(bot.bot_id, bot.dimensions)
            with self._waiters.waiting([*keys, NEW_QUEUE], offer) as waiter:
                watch.hold()
                ended = await self._holds.wait(waiter, deadline)
                # A task promised as it was created: its creation settles it.
                handed = await waiter.handed_over()
                watch.resume()
            if handed is not None:
                self._observe_dispatch(handed)
                return handed
            try:
                dispatched = await self._reserve(dispatcher, settings, self._ctx.clock.now())
            except BaseException:
                self._waiters.pass_on(waiter)
                raise
            self._waiters.claimed(waiter, dispatched[0].queue_key if dispatched else None)
            if dispatched is not None or ended:
                return dispatched

    async def _reserve(
        self, dispatcher: Dispatcher, settings: Settings, now: float
    ) -> tuple[TaskResult, Dispatch] | None:
        """Claims the best task for the bot, recording the dispatch with the claim."""
        bot = dispatcher.bot
        keys = self._ctx.queues.queues_for(bot.bot_id, bot.dimensions)
        if not keys:
            return None
        dispatched = await self._ctx.store.dispatch_next(
            keys,
            now,
            functools.partial(_reserve_for, bot, settings, now),
            functools.partial(dispatcher.record, now=now),
        )
        if dispatched is not None:
            self._observe_dispatch(dispatched)
        return dispatched

    @staticmethod
    def _handed_over(
        dispatcher: Dispatcher,
        settings: Settings,
        result: TaskResult,
        request: TaskRequest,
        now: float,
    ) -> tuple[TaskResult, Dispatch]:
        """A new task handed to this held poll: reserved as a claim reserves it, then recorded."""
        reserved = _reserve_for(dispatcher.bot, settings, now, result)
        return reserved, dispatcher.record(reserved, request, now=now)

    def _observe_dispatch(self, dispatched: tuple[TaskResult, Dispatch]) -> None:
        # A termination task waits for its one bot, not for capacity: not a dispatch to time.
        if dispatched[1].reply.reply.get("cmd") == "run":
            self._metrics.observe_dispatch(dispatched[0])

    @staticmethod
    def _sleep(duration: float, quarantined: bool = False, message: str = "") -> dict[str, Any]:
        reply: dict[str, Any] = {
            "cmd": "sleep",
            "duration": float(duration),
            "quarantined": quarantined,
        }
        # A stock bot ignores the extra key; ours logs it, so the bot's log says why.
        if message:
            reply["message"] = message
        return reply


def _reserve_for(bot: Bot, settings: Settings, now: float, result: TaskResult) -> TaskResult:
    """The task's new run, reserved for `bot` until it confirms (transitions.reserve)."""
    return transitions.reserve(
        result,
        bot_id=bot.bot_id,
        bot_dimensions=bot.dimensions,
        bot_version=bot.version,
        now=now,
        reserve_until=now + settings.reservation_timeout_secs,
    )


def _bot_id_of(report: BotReport) -> str:
    ids = report.dimensions.get("id") or []
    return ids[0] if ids else ""


def _session_bot_id(ctx: BotApiContext, token: str | None) -> str:
    """The bot ID inside a token, for calls whose body does not name the bot."""
    if token is None:
        raise BadSessionToken("no session")
    return session.unmarshal(token, ctx.keys).bot_id
