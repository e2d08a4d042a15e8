"""The overview (`/`) and the queues page: the fleet and its work at a glance.

Thin handlers: the gate checks the caller against the rules of the client
API calls whose data the page shows, one service call or a few fetch the
data, a template renders it.
"""

from __future__ import annotations

from aiohttp import web

from server.errors import NotFound
from server.web.queries import limit_of, one, pager
from server.web.render import page, render
from server.web.services import WEB


@page
async def overview(request: web.Request) -> web.StreamResponse:
    """Tasks per state, bots per state, the config in use and the last refused edit."""
    services = request.app[WEB]
    me = await services.gate.check(
        request, "Tasks.SummarizeTasks", "Bots.ListBots", "Server.GetDetails"
    )
    snapshot = services.config.current
    context = {
        "tasks": await services.summary.task_states(),
        "bots": await services.summary.bot_states(),
        "snapshot": snapshot,
        "pools": [(", ".join(p.name), list(p.schedulers)) for p in snapshot.pools.pool],
        "groups": snapshot.groups,
        "stable": services.botcode.stable.digest,
        "canary": services.botcode.canary.digest if services.botcode.canary else "",
    }
    return await render(request, "overview.html", context, me=me)


@page
async def queues(request: web.Request) -> web.StreamResponse:
    """Each queue (requested dimension set): tasks waiting, matching bots, and why."""
    services = request.app[WEB]
    me = await services.gate.check(request, "Tasks.GetPending", "Bots.ListBots")
    include_empty = one(request.query, "empty") in ("1", "on", "true")
    found = await services.pending.queues(
        limit_of(request.query), one(request.query, "cursor"), include_empty=include_empty
    )
    context = {
        "queues": found.items,
        "include_empty": include_empty,
        **pager(request.rel_url, found.cursor),
    }
    return await render(request, "queues.html", context, me=me)


@page
async def not_found(request: web.Request) -> web.StreamResponse:
    """An HTML 404 for any other path under the UI's prefix."""
    raise NotFound(f"no such page: {request.path}")
