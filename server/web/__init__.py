"""The web UI (DESIGN.md 10): server-rendered pages over the service layer.

`/` is the overview; everything else lives under `/ui/`: the bots, one bot,
the tasks, one task (with its log followed live), the queues, sign-in, and
the stylesheet and script under `/ui/static/`. Pages are Jinja templates
(server/web/templates) with autoescape on; no page loads anything from
another site, and none needs a build step.

Who may see what is the client API's business: each page is checked
against the rules (server/auth/access.py) of the API calls whose answers
it shows, and each button calls the guarded API servicer itself
(server/web/gate.py, server/web/services.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from google.protobuf import descriptor

from server.api import transcoder
from server.auth.access import Access
from server.auth.authenticator import Authenticator
from server.botcode import BotCode
from server.clock import Clock
from server.config.live import LiveConfig
from server.scheduler.fleet import FleetService
from server.scheduler.pending import PendingService
from server.scheduler.summary import SummaryService
from server.scheduler.tasks import TaskService
from server.web import account, bots, pages, tasks
from server.web.gate import Gate
from server.web.render import STATIC_DIR, STATIC_PREFIX, setup_templates
from server.web.services import WEB, WebServices

__all__ = ["WEB", "WebServices", "setup"]

PREFIX = "/ui"


def setup(
    app: web.Application,
    *,
    task_service: TaskService,
    fleet: FleetService,
    pending: PendingService,
    config: LiveConfig,
    botcode: BotCode,
    access: Access,
    authenticator: Authenticator,
    clock: Clock,
    server_version: str,
    api: Sequence[tuple[descriptor.ServiceDescriptor, object]],
) -> None:
    """Adds the UI's routes, templates and services to `app`.

    `api` is the client API as the app serves it: each service with its
    guarded servicer (server/api/guard.py).
    """
    guarded = {service.name: servicer for service, servicer in api}
    tasks_service = next(service for service, _ in api if service.name == "Tasks")
    api_routes = {r.path: r.handler for r in transcoder.routes(tasks_service, guarded["Tasks"])}
    app[WEB] = WebServices(
        tasks=task_service,
        fleet=fleet,
        pending=pending,
        summary=SummaryService(task_service, fleet),
        config=config,
        botcode=botcode,
        gate=Gate(access, authenticator),
        server_version=server_version,
        tasks_api=guarded["Tasks"],
        bots_api=guarded["Bots"],
        log_handler=api_routes[transcoder.aiohttp_path("/api/v1/tasks/{task_id}/log")],
        stream_handler=api_routes[transcoder.aiohttp_path("/api/v1/tasks/{task_id}/stdout:stream")],
    )
    setup_templates(app, clock)
    app.add_routes(
        [
            web.get("/", pages.overview),
            web.get(PREFIX, _to_overview),
            web.get(f"{PREFIX}/", _to_overview),
            web.get(f"{PREFIX}/bots", bots.bot_list),
            web.get(f"{PREFIX}/bots/{{bot_id}}", bots.bot_page),
            web.post(f"{PREFIX}/bots/{{bot_id}}/{{action}}", bots.bot_action),
            web.get(f"{PREFIX}/tasks", tasks.task_list),
            web.get(f"{PREFIX}/tasks/{{task_id}}", tasks.task_page),
            web.get(f"{PREFIX}/tasks/{{task_id}}/log", tasks.task_log),
            web.get(f"{PREFIX}/tasks/{{task_id}}/stdout:stream", tasks.task_stream),
            web.post(f"{PREFIX}/tasks/{{task_id}}/{{action}}", tasks.task_action),
            web.get(f"{PREFIX}/queues", pages.queues),
            web.get(f"{PREFIX}/signin", account.sign_in_form),
            web.post(f"{PREFIX}/signin", account.sign_in),
            web.post(f"{PREFIX}/signout", account.sign_out),
            web.static(STATIC_PREFIX, STATIC_DIR),
            web.get(f"{PREFIX}/{{tail:.*}}", pages.not_found),
        ]
    )


async def _to_overview(request: web.Request) -> web.StreamResponse:
    """The UI's prefix alone leads to the overview."""
    raise web.HTTPFound("/")
