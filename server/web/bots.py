"""The bot pages: the filtered fleet, one bot (dimensions, state, events, tasks), and
its admin buttons (quarantine, maintenance, terminate)."""

from __future__ import annotations

import json
import urllib.parse

from aiohttp import web

from protos.api import bots_pb2
from server.auth.principal import ADMIN
from server.model import TaskQuery
from server.web import buttons
from server.web.queries import bot_filter, limit_of, one, pager
from server.web.render import page, render
from server.web.services import WEB

# A bot's page lists this many of its latest tasks (the task list has the rest).
RECENT_TASKS = 10

# Each button: the guarded Bots RPC it calls and the request it sends, from the
# bot ID and the form's message.
BOT_ACTIONS: buttons.Actions = {
    "quarantine": (
        "QuarantineBot",
        lambda b, m: bots_pb2.BotControlRequest(bot_id=b, message=m),
    ),
    "unquarantine": ("UnquarantineBot", lambda b, _: bots_pb2.BotRequest(bot_id=b)),
    "maintenance": (
        "SetBotMaintenance",
        lambda b, m: bots_pb2.BotControlRequest(bot_id=b, message=m or "in maintenance"),
    ),
    "end_maintenance": (
        "SetBotMaintenance",
        lambda b, _: bots_pb2.BotControlRequest(bot_id=b, message=""),
    ),
    "terminate": ("TerminateBot", lambda b, _: bots_pb2.BotRequest(bot_id=b)),
}


@page
async def bot_list(request: web.Request) -> web.StreamResponse:
    """Bots by ID, filtered by dimensions and state, paged by cursor."""
    services = request.app[WEB]
    me = await services.gate.check(request, "Bots.ListBots")
    chosen = bot_filter(request.query)
    found = await services.fleet.list_bots(chosen.query)
    context = {
        "filter": chosen,
        "bots": [(bot, services.fleet.state(bot)) for bot in found.items],
        **pager(request.rel_url, found.cursor),
    }
    return await render(request, "bots.html", context, me=me)


@page
async def bot_page(request: web.Request) -> web.StreamResponse:
    """One bot: dimensions, state, current task, quarantine, its events and latest tasks."""
    services = request.app[WEB]
    me = await services.gate.check(request, "Bots.GetBot", "Bots.ListBotEvents", "Tasks.ListTasks")
    bot = await services.fleet.get_bot(request.match_info["bot_id"])
    cursor = one(request.query, "cursor")
    events = await services.fleet.list_events(bot.bot_id, limit_of(request.query), cursor)
    recent = await services.tasks.list_tasks(TaskQuery(bot_id=bot.bot_id, limit=RECENT_TASKS))
    context = {
        "bot": bot,
        "state": services.fleet.state(bot),
        "bot_state_json": json.dumps(bot.state, indent=2, sort_keys=True),
        "events": events.items,
        "recent": recent.items,
        "can_administer": me.has_role(ADMIN),
        **pager(request.rel_url, events.cursor),
        "done": request.query.get("done", "") if request.query.get("done") in BOT_ACTIONS else "",
    }
    return await render(request, "bot.html", context, me=me)


@page
async def bot_action(request: web.Request) -> web.StreamResponse:
    """A button: the Bots RPC it stands for, through the client API's guard."""
    bot_id = request.match_info["bot_id"]
    action, _, _ = await buttons.press(request, request.app[WEB].bots_api, BOT_ACTIONS, bot_id)
    raise web.HTTPSeeOther(f"/ui/bots/{urllib.parse.quote(bot_id, safe='')}?done={action}")
