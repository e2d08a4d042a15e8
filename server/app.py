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
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from protos.api import auth_pb2, bots_pb2, server_pb2, tasks_pb2
from server import __version__
from server import web as web_ui
from server.api import grpc_server as grpc_api
from server.api import guard, servicers, transcoder
from server.api.auth_servicer import AuthServicer
from server.appkeys import (
    BOOTSTRAP_SERVICE,
    BOT_SERVICE,
    BOTCODE,
    CONFIG,
    GRPC,
    ID_TOKENS,
    RUN_SERVICE,
    STORE,
    SWEEPER,
    TASK_SERVICE,
    TOKEN_SERVICE,
)
from server.auth import minting, session_keystore
from server.auth.access import Access
from server.auth.access_verifier import AccessTokenVerifier
from server.auth.authenticator import Authenticator, Verifier
from server.auth.exposure import warn_if_exposed
from server.auth.tokens import ApiTokenService, ApiTokenVerifier
from server.botapi import handlers as bot_handlers
from server.botapi import token_handlers
from server.botapi.bootstrap import BootstrapService
from server.botapi.context import BotApiContext
from server.botapi.runs import RunService
from server.botapi.service import BotService
from server.botapi.tokens import TokenService
from server.botcode import BotCode
from server.clock import Clock, SystemClock
from server.config.live import LiveConfig
from server.config.model import ConfigSnapshot
from server.metrics import METRICS, Metrics
from server.metrics import routes as metrics_routes
from server.middleware import errors
from server.replicas import DATASTORE_RECHECK_SECS, SQLITE_RECHECK_SECS, ReplicaSync
from server.scheduler.census import CensusService
from server.scheduler.fleet import FleetService
from server.scheduler.pending import PendingService
from server.scheduler.queues import QueueIndex
from server.scheduler.sweeper import Sweeper
from server.scheduler.tasks import TaskService
from server.scheduler.waiters import NEW_QUEUE, PollWaiters, TaskArrivals
from server.store.backends import StoreOptions, open_store
from server.store.base import Store

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
    # Where the HTTP server listens, for the warning about anonymous writes.
    listen_host: str = "127.0.0.1"
    # Which Store holds the state (the state directory's SQLite file by default).
    store: StoreOptions = dataclasses.field(default_factory=StoreOptions)
    # How often the Store is re-checked for what other replicas changed
    # (server/replicas.py); None: the store's default, 0 disables.
    recheck_secs: float | None = None

    @property
    def effective_recheck_secs(self) -> float:
        """recheck_secs, or the default of the chosen store."""
        if self.recheck_secs is not None:
            return self.recheck_secs
        return DATASTORE_RECHECK_SECS if self.store.is_shared else SQLITE_RECHECK_SECS


def make_private_dir(state_dir: pathlib.Path) -> None:
    """Creates the state directory readable by its owner only, or warns when it is not.

    With SQLite, the database in it holds the session and signing keys:
    whoever reads it can forge bot sessions and task tokens.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = state_dir.stat().st_mode
    if mode & 0o077:
        log.warning(
            "state directory %s is open to other users (mode %o): it holds the server's"
            " keys; chmod 700 it",
            state_dir,
            mode & 0o777,
        )


async def create_app(
    options: ServerOptions,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    config: LiveConfig | None = None,
    timer: Callable[[], float] | None = None,
) -> web.Application:
    """Builds the server application; resources are released on cleanup.

    `timer` times the bot calls for /metrics (a monotonic clock by default).
    """
    clock = clock or SystemClock()
    make_private_dir(options.state_dir)
    config = config or LiveConfig(options.config_dir, clock=clock)
    own_store = store is None
    store = store or await open_store(options.store, options.state_dir, clock)
    keys = await session_keystore.load_or_create(store, clock, options.state_dir)
    # Replicas reading the same files log (and serve at /api/v1/server) one revision.
    log.info("config revision %s from %s", config.current.revision, options.config_dir)
    server_url = config.current.settings.server_url or options.server_url
    botcode = BotCode(config.current, server_url=server_url, bot_dir=options.bot_dir)

    hosts = [options.listen_host, *([options.grpc_host] if options.grpc_port is not None else [])]

    def on_config(snapshot: ConfigSnapshot) -> None:
        botcode.update(snapshot)
        warn_if_exposed(hosts, snapshot.settings.anonymous_role)

    config.subscribe(on_config)
    warn_if_exposed(hosts, config.current.settings.anonymous_role)
    waiters = PollWaiters()
    queues = QueueIndex(store, on_new=lambda _: waiters.notify(NEW_QUEUE))
    await queues.refresh()
    # Each task that enters a queue wakes one held poll that can take it.
    notifier = TaskArrivals(waiters)
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
    app[RUN_SERVICE] = RunService(ctx)
    app[TASK_SERVICE] = tasks
    app[STORE] = store
    app.add_routes(bot_handlers.routes())
    minted = minting.minters(store, clock, server_url)
    app[TOKEN_SERVICE] = TokenService(ctx, minted.access, minted.id_tokens)
    app[BOOTSTRAP_SERVICE] = BootstrapService(ctx, minted.bootstrap)
    app[ID_TOKENS] = minted.id_tokens
    app.add_routes(token_handlers.routes())
    # Why-pending reports, for the client API and the web UI alike.
    pending = PendingService(store, config, clock)
    api = [
        (
            tasks_pb2.DESCRIPTOR.services_by_name["Tasks"],
            servicers.TasksServicer(tasks, pending, config, clock),
        ),
        (bots_pb2.DESCRIPTOR.services_by_name["Bots"], servicers.BotsServicer(fleet, tasks, clock)),
        (
            server_pb2.DESCRIPTOR.services_by_name["Server"],
            servicers.ServerServicer(config, botcode, SERVER_VERSION),
        ),
        (auth_pb2.DESCRIPTOR.services_by_name["Auth"], AuthServicer(ApiTokenService(store, clock))),
    ]
    # Bearer tokens of the client API, each kind recognized by its verifier
    # (server/auth/authenticator.py); bots keep their own auth (bots.cfg).
    verifiers: list[Verifier] = [
        ApiTokenVerifier(store, clock),
        AccessTokenVerifier(minted.access, store, config),
    ]
    authenticator = Authenticator(verifiers, lambda: config.current.settings.anonymous_role)
    access = Access(authenticator, config, tasks.get_request)
    # Prometheus metrics (server/metrics.py): the bot service observes its
    # polls; scrapes count through the census and are read like the API.
    census = CensusService(store, config, clock)
    metrics = Metrics(census, config, waiters, access, clock, timer=timer)
    app[METRICS] = metrics
    # Outermost, so the count has the status the errors middleware answered.
    app.middlewares.insert(0, metrics.http.middleware())
    app[BOT_SERVICE] = BotService(ctx, waiters, metrics=metrics.bot_calls)
    app.add_routes(metrics_routes())
    api = [(service, guard.guarded(service, servicer, access)) for service, servicer in api]
    for service, servicer in api:
        app.add_routes(transcoder.routes(service, servicer))
    endpoint = grpc_api.GrpcEndpoint()
    app[GRPC] = endpoint

    # The web UI (server/web/, DESIGN.md 10): `/` and `/ui/...`, reading through
    # the services above and guarded by the same Access rules as the client API.
    web_ui.setup(
        app,
        task_service=tasks,
        fleet=fleet,
        pending=pending,
        config=config,
        botcode=botcode,
        access=access,
        authenticator=authenticator,
        clock=clock,
        server_version=SERVER_VERSION,
        api=api,
    )

    sweeper = Sweeper(store, clock, tasks, notifier)
    app[SWEEPER] = sweeper

    replicas = ReplicaSync(store, clock, queues, waiters, keys)

    async def background(app: web.Application) -> AsyncIterator[None]:
        loops = []
        if options.config_poll_secs > 0:
            loops.append(asyncio.create_task(config.watch(options.config_poll_secs)))
        if options.sweep_secs > 0:
            loops.append(asyncio.create_task(sweeper.run(options.sweep_secs)))
        if options.effective_recheck_secs > 0:
            loops.append(asyncio.create_task(replicas.run(options.effective_recheck_secs)))
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
