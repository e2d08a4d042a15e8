"""The run service: claim, task_update and task_error (PROTOCOL.md 1.8, 1.9, 1.11).

Fencing: every write names its run (task ID + try number) and must come from
the bot the run belongs to while the run is current; anything else is
refused with `must_stop` and writes nothing. task_update never answers a 4xx
for such expected conditions, because a 4xx kills a stock bot's task and
loses its output (PROTOCOL.md 0.2.1 T3).

A run ID names a task and a try, and an unconfirmed reservation that is
released gives its try back (transitions.release), so the same run ID can be
handed to another bot. A confirmed run's ID is never handed out again: every
later try gets a higher number. So output and results are written only
under a confirmed run (task_update confirms a stock bot's reservation
first), never under one that may become another bot's.

Every call that may end a task then stops the task's children
(server/scheduler/children.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any

from protos.internal import session_pb2
from server import dimensions, ids
from server.auth import session
from server.auth.botauth import BotAuthError
from server.auth.session import BadSessionToken
from server.botapi.context import BotApiContext
from server.botapi.messages import (
    BotCredentials,
    ClaimRequest,
    TaskErrorRequest,
    TaskUpdateRequest,
)
from server.errors import TaskNotFound
from server.model import TaskResult, TaskState, evolve
from server.scheduler import children, dedup, manifest, transitions
from server.scheduler.mutation import mutate

log = logging.getLogger("drover.botapi")


def is_current_run(result: TaskResult, bot_id: str, try_number: int) -> bool:
    """True when `result`'s current run is the bot's run `try_number`."""
    return result.bot_id == bot_id and result.try_number == try_number


def is_running_run(result: TaskResult | None, bot_id: str, try_number: int) -> bool:
    """True when `result` is running, its current run the bot's run `try_number`."""
    return (
        result is not None
        and result.state is TaskState.RUNNING
        and is_current_run(result, bot_id, try_number)
    )


def confirmed(
    result: TaskResult, *, bot_id: str, try_number: int, now: float, tolerance_secs: int
) -> TaskResult | None:
    """The bot's running run `try_number`, its reservation confirmed; None if it is not the bot's.

    A confirmed run is returned as it is.
    """
    if not is_running_run(result, bot_id, try_number):
        return None
    if result.reserved_until is None:
        return result
    return transitions.confirm(
        result, now=now, tolerance_secs=tolerance_secs, claim_id=result.claim_id
    )


class RunService:
    """Answers the bot calls about one run."""

    def __init__(self, ctx: BotApiContext) -> None:
        self._ctx = ctx

    async def claim(self, req: ClaimRequest, creds: BotCredentials) -> dict[str, Any]:
        """Confirms a reservation; idempotent by claim_id."""
        ctx = self._ctx
        now = ctx.clock.now()
        try:
            sess = self._session(req.session, creds)
        except (BadSessionToken, BotAuthError) as e:
            return {"cmd": "skip", "reason": str(e)}
        bot_id = sess.bot_id
        task_id, try_number = ids.split_run_id(req.run_id)
        request = await ctx.store.get_request(task_id)
        bot = await ctx.store.get_bot(bot_id)
        if request is None or bot is None:
            return {"cmd": "skip", "reason": "no such task"}

        def change(r: TaskResult) -> TaskResult | None:
            if not is_running_run(r, bot_id, try_number):
                return None
            if r.killing and r.reserved_until is not None:
                return transitions.cancel_unstarted(r, now=now)
            if r.reserved_until is None and r.claim_id:
                return None
            return transitions.confirm(
                r, now=now, tolerance_secs=request.bot_ping_tolerance_secs, claim_id=req.claim_id
            )

        try:
            result, _ = await mutate(ctx.store, task_id, change)
        except TaskNotFound:
            return {"cmd": "skip", "reason": "no such task"}
        await children.stop_children(ctx.store, result, now)
        if not (is_running_run(result, bot_id, try_number) and result.claim_id == req.claim_id):
            return {"cmd": "skip", "reason": "the task is no longer reserved for this bot"}
        props = request.slices[result.current_slice].properties
        if not dimensions.matches(bot.dimensions, props.dimensions):
            log.warning("bot %s claimed %s without matching dimensions", bot_id, req.run_id)
            return {"cmd": "skip", "reason": "the bot's dimensions do not match the task"}
        return {
            "cmd": "run",
            "manifest": manifest.build(
                request, result, bot, ctx.server_url, ctx.system_account(bot_id)
            ),
            "task_id": result.run_id,
        }

    async def task_update(self, req: TaskUpdateRequest, creds: BotCredentials) -> dict[str, Any]:
        """Records output and liveness of a run and, on completion, its end state."""
        ctx = self._ctx
        now = ctx.clock.now()
        try:
            sess = self._session(req.session, creds)
        except (BadSessionToken, BotAuthError) as e:
            return _stop(f"refused: {e}")
        if req.bot_id and req.bot_id != sess.bot_id:
            return _stop("the session belongs to another bot")
        bot_id = sess.bot_id
        task_id, try_number = ids.split_run_id(req.run_id)
        # The result's writes below are compare-and-sets, which refuse a stale
        # copy: only a refusal needs the stored record, so only it reads again.
        # Output and reports are not, and must not land in a run another
        # replica has ended: an update that carries them reads the stored one.
        carries_data = bool(req.output or req.report)
        result = None if carries_data else await ctx.store.peek_result(task_id)
        if not is_running_run(result, bot_id, try_number):
            result = await ctx.store.get_result(task_id)
        if result is None or not is_current_run(result, bot_id, try_number):
            return _stop("this run is not the bot's current run")
        if result.state is not TaskState.RUNNING:
            if transitions.is_same_completion(result, req.update):
                return {"ok": True, "must_stop": False}
            return _stop(f"the task has ended ({result.state.name})")
        request = await ctx.store.get_request(task_id)
        assert request is not None, "a stored result always has its request"
        tolerance = request.bot_ping_tolerance_secs
        run = functools.partial(
            confirmed, bot_id=bot_id, try_number=try_number, now=now, tolerance_secs=tolerance
        )
        if result.reserved_until is not None and (req.output or req.report):
            # A stock bot's first update confirms its reservation. Until then the
            # sweeper may release it and hand this run ID to another bot, whose
            # output this write would land in: confirm it before writing.
            result, _ = await mutate(ctx.store, task_id, lambda r: _changed(r, run(r)))
            if run(result) is not result:  # not the bot's confirmed run
                return _stop("this run is no longer the bot's: its reservation was released")
        # Written before the update below, so a follower that sees the run end
        # (the end of its stream) finds the final chunk already stored.
        if req.output:
            await ctx.store.write_output(req.run_id, req.output_chunk_start, req.output)
        if req.report:
            key = f"{req.run_id}:{req.results_offset}"
            await ctx.store.add_report(task_id, req.report, key)

        def change(r: TaskResult) -> TaskResult | None:
            mine = run(r)
            if mine is None:
                return None
            r = transitions.apply_update(mine, req.update, now=now, tolerance_secs=tolerance)
            if r.state is TaskState.COMPLETED:
                r = evolve(r, properties_hash=dedup.reusable_hash(request, r))
            return transitions.settle_restart(r, request, now=now)

        stored, changed = await mutate(ctx.store, task_id, change, read=result)
        ctx.output_waiters.notify(task_id)
        await children.stop_children(ctx.store, stored, now)
        if not changed and not is_current_run(stored, bot_id, try_number):
            return _stop("this run is not the bot's current run")
        if changed and stored.is_dispatchable:
            ctx.notifier.notify(stored.queue_key)
        # Our own bot reads `paused` (SIGSTOP / SIGCONT); a stock bot ignores it.
        reply: dict[str, Any] = {"ok": True, "must_stop": False, "paused": stored.paused}
        if stored.state is TaskState.RUNNING and stored.killing:
            reply.update(must_stop=True, stop_reason="the task was canceled")
        elif not changed and stored.state is not TaskState.RUNNING:
            reply.update(must_stop=True, stop_reason=f"the task has ended ({stored.state.name})")
        token = ctx.refreshed_token(sess, now)
        if token:
            reply["session"] = token
        return reply

    async def task_error(self, req: TaskErrorRequest, creds: BotCredentials) -> dict[str, Any]:
        """Ends a run the bot could not run; unknown or foreign runs are ignored."""
        ctx = self._ctx
        now = ctx.clock.now()
        try:
            sess = self._session(req.session, creds)
        except (BadSessionToken, BotAuthError):
            return {"resp": 1}
        task_id, try_number = ids.split_run_id(req.run_id)
        request = await ctx.store.get_request(task_id)
        if request is None:
            return {"resp": 1}
        # The message can hold the whole manifest, secrets included
        # (PROTOCOL.md 0.2.8 E2): keep only its first line, cut before any repr.
        message = req.message.splitlines()[0] if req.message else "task_error"
        message = message.split(": {", 1)[0][:500]

        def change(r: TaskResult) -> TaskResult | None:
            if not is_running_run(r, sess.bot_id, try_number):
                return None
            ended = transitions.end_with_error(
                r, now=now, message=message, client_error=req.client_error
            )
            return transitions.settle_restart(ended, request, now=now)

        with contextlib.suppress(TaskNotFound):
            stored, _ = await mutate(ctx.store, task_id, change)
            await children.stop_children(ctx.store, stored, now)
        return {"resp": 1}

    def _session(self, token: str | None, creds: BotCredentials) -> session_pb2.Session:
        """Verifies a run call's session, ignoring expiry (PROTOCOL.md 0.2.4 S3)."""
        if token is None:
            raise BadSessionToken("no session")
        sess = session.unmarshal(token, self._ctx.keys)
        self._ctx.recheck_credentials(sess, creds)
        return sess


def _changed(old: TaskResult, new: TaskResult | None) -> TaskResult | None:
    """`new` as a change of `old` for `mutate`: None when it is `old` itself."""
    return None if new is old else new


def _stop(reason: str) -> dict[str, Any]:
    return {"ok": False, "must_stop": True, "stop_reason": reason}
