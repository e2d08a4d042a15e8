"""The application factory: wires the Store, config, services and routes together.

`create_app` is the one place that knows every component; tests build the
same app with a fake clock or their own store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pathlib
from collections.abc import AsyncIterator

from aiohttp import web

from protos.api import bots_pb2, server_pb2, tasks_pb2
from server import __version__
from server.api import grpc_server as grpc_api
from server.api import servicers, transcoder
from server.appkeys import (
    BOT_SERVICE,
    BOTCODE,
    CONFIG,
    GRPC,
    RUN_SERVICE,
    STORE,
    SWEEPER,
    TASK_SERVICE,
)
from server.auth.session import SessionKeys
from server.botapi import handlers as bot_handlers
from server.botapi.context import BotApiContext
from server.botapi.runs import RunService
from server.botapi.service import BotService
from server.botcode import BotCode
from server.clock import Clock, SystemClock
from server.config.live import LiveConfig
from server.config.model import ConfigSnapshot
from server.middleware import errors
from server.scheduler.fleet import FleetService
from server.scheduler.pending import PendingService
from server.scheduler.queues import QueueIndex
from server.scheduler.sweeper import Sweeper
from server.scheduler.tasks import TaskService
from server.scheduler.waiters import NEW_QUEUE, PollWaiters
from server.store.base import Store
from server.store.sqlite import SqliteStore

log = logging.getLogger("drover.app")

# A 250 000-byte output chunk base64-encoded in JSON is ~334 KB (PROTOCOL.md
# 0.2.1 T7); polls grow with the host's Python packages. 4 MiB leaves room.
MAX_BODY = 4 * 1024 * 1024
BOT_DIR = pathlib.Path(__file__).resolve().parent.parent / "bot"
SERVER_VERSION = f"drover-{__version__}"


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """How to run: where state lives, where configs are, the URL bots use."""

    state_dir: pathlib.Path
    config_dir: pathlib.Path
    server_url: str
    bot_dir: pathlib.Path = BOT_DIR
    # How often the config directory is checked for edits; 0 disables watching.
    config_poll_secs: float = 1.0
    # How often deadlines (expiry, reservations, bot death) are checked; 0 disables.
    sweep_secs: float = 1.0
    # The client API over gRPC listens here (port 0 picks a free one); None: off.
    grpc_host: str = "127.0.0.1"
    grpc_port: int | None = None


async def create_app(
    options: ServerOptions,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    config: LiveConfig | None = None,
) -> web.Application:
    """Builds the server application; resources are released on cleanup."""
    clock = clock or SystemClock()
    options.state_dir.mkdir(parents=True, exist_ok=True)
    config = config or LiveConfig(options.config_dir, clock=clock)
    own_store = store is None
    store = store or await SqliteStore.open(options.state_dir / "drover.sqlite3", clock=clock)
    keys = SessionKeys.load_or_create(options.state_dir)
    server_url = config.current.settings.server_url or options.server_url
    botcode = BotCode(config.current, server_url=server_url, bot_dir=options.bot_dir)

    def on_config(snapshot: ConfigSnapshot) -> None:
        botcode.update(snapshot)

    config.subscribe(on_config)
    waiters = PollWaiters()
    queues = QueueIndex(store, on_new=lambda _: waiters.notify(NEW_QUEUE))
    await queues.refresh()
    notifier = waiters
    output_waiters = PollWaiters()
    ctx = BotApiContext(
        store=store,
        config=config,
        clock=clock,
        keys=keys,
        botcode=botcode,
        queues=queues,
        notifier=notifier,
        server_version=SERVER_VERSION,
        server_url=server_url,
        output_waiters=output_waiters,
    )
    tasks = TaskService(store, config, clock, queues, notifier, output_waiters)
    fleet = FleetService(store, config, clock)

    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app[CONFIG] = config
    app[BOTCODE] = botcode
    app[BOT_SERVICE] = BotService(ctx, waiters)
    app[RUN_SERVICE] = RunService(ctx)
    app[TASK_SERVICE] = tasks
    app[STORE] = store
    app.add_routes(bot_handlers.routes())
    api = [
        (
            tasks_pb2.DESCRIPTOR.services_by_name["Tasks"],
            servicers.TasksServicer(tasks, PendingService(store, config, clock), config, clock),
        ),
        (bots_pb2.DESCRIPTOR.services_by_name["Bots"], servicers.BotsServicer(fleet, tasks, clock)),
        (
            server_pb2.DESCRIPTOR.services_by_name["Server"],
            servicers.ServerServicer(config, botcode, SERVER_VERSION),
        ),
    ]
    for service, servicer in api:
        app.add_routes(transcoder.routes(service, servicer))
    endpoint = grpc_api.GrpcEndpoint()
    app[GRPC] = endpoint

    sweeper = Sweeper(store, clock, tasks, queues, notifier)
    app[SWEEPER] = sweeper

    async def background(app: web.Application) -> AsyncIterator[None]:
        loops = []
        if options.config_poll_secs > 0:
            loops.append(asyncio.create_task(config.watch(options.config_poll_secs)))
        if options.sweep_secs > 0:
            loops.append(asyncio.create_task(sweeper.run(options.sweep_secs)))
        with contextlib.suppress(NotImplementedError, RuntimeError):
            config.install_sighup(asyncio.get_running_loop())
        grpc_server = None
        if options.grpc_port is not None:
            grpc_server, endpoint.port = await grpc_api.start(
                api, options.grpc_host, options.grpc_port
            )
            log.info("client API over gRPC on %s:%d", options.grpc_host, endpoint.port)
        yield
        if grpc_server is not None:
            await grpc_server.stop(grace=2)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            config.remove_sighup(asyncio.get_running_loop())
        for loop in loops:
            loop.cancel()
        for loop in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        if own_store:
            await store.close()

    app.cleanup_ctx.append(background)
    return app
