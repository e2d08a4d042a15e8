"""What the web UI's handlers are handed: the service layer, the gate, the guarded API.

One object on the application (`WEB`), built by `server.web.setup` from what
the app factory already made: the pages read through the same services as
the client API, and the action buttons call the client API's own guarded
servicers, so a button obeys exactly the rules of the call it stands for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from server.botcode import BotCode
from server.config.live import LiveConfig
from server.scheduler.fleet import FleetService
from server.scheduler.pending import PendingService
from server.scheduler.summary import SummaryService
from server.scheduler.tasks import TaskService
from server.web.gate import Gate

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True)
class WebServices:
    """Everything a page or an action needs."""

    tasks: TaskService
    fleet: FleetService
    pending: PendingService
    summary: SummaryService
    config: LiveConfig
    botcode: BotCode
    gate: Gate
    server_version: str
    # The guarded Tasks and Bots servicers (server/api/guard.py). Their
    # methods are built at run time from the service descriptors, hence Any.
    tasks_api: Any
    bots_api: Any
    # The client API's transcoded handlers of a task's raw log and of its
    # output stream, which the UI hands a browser's request to, with the
    # sign-in cookie as its bearer token.
    log_handler: Handler
    stream_handler: Handler


WEB = web.AppKey("web", WebServices)
