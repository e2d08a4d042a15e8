"""Server commands: `serve` runs one, `config validate` checks a config set
offline, `info` asks a running one for its versions and config revision.

`add_store_options` and `store_options` are the flags that choose the Store
(SQLite in the state directory, or Cloud Datastore shared by replicas),
shared with the admin commands that open the Store themselves."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import logging
import pathlib
from typing import TYPE_CHECKING, Any

from server import __version__
from server.cli import render
from server.cli.client import client_of
from server.cli.options import Failure, Subparsers, UsageError

if TYPE_CHECKING:
    from aiohttp import web

    from server.store.backends import StoreOptions

DEFAULT_PORT = 8080
DEFAULT_GRPC_PORT = 8081


def register(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Adds `serve`, `config validate` and `info`."""
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--state-dir", type=pathlib.Path, default=pathlib.Path("state"))
    serve.add_argument("--config-dir", type=pathlib.Path, default=pathlib.Path("configs"))
    serve.add_argument(
        "--server-url",
        default="",
        help="the URL bots use to reach this server (default: http://HOST:PORT)",
    )
    serve.add_argument(
        "--grpc-port",
        type=int,
        default=DEFAULT_GRPC_PORT,
        help=f"port of the client API over gRPC (default {DEFAULT_GRPC_PORT}; -1 turns it off)",
    )
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--recheck-secs",
        type=_non_negative,
        default=None,
        help="how often to re-check the store for what other replicas changed: tasks for"
        " held polls, new queues, session keys (default 1 with datastore, 10 with sqlite;"
        " 0: never)",
    )
    add_store_options(serve)
    serve.set_defaults(run=_serve)

    config = sub.add_parser("config", help="config tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    validate = config_sub.add_parser("validate", help="validate a config directory")
    validate.add_argument("dir", type=pathlib.Path)
    validate.set_defaults(run=_validate)

    info = sub.add_parser(
        "info", parents=[parent], help="a server's version, bot version and config revision"
    )
    info.set_defaults(run=_info)


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """Adds the flags that choose the Store and where it is."""
    group = parser.add_argument_group("store")
    group.add_argument(
        "--store",
        choices=("sqlite", "datastore"),
        default="sqlite",
        help="sqlite: one file in --state-dir, for one server process (default);"
        " datastore: Cloud Datastore, for several server replicas"
        " (the emulator when $DATASTORE_EMULATOR_HOST is set)",
    )
    group.add_argument(
        "--datastore-project",
        help="Google Cloud project (default: $DATASTORE_PROJECT_ID, $GOOGLE_CLOUD_PROJECT"
        " or the project of the Application Default Credentials)",
    )
    group.add_argument("--datastore-namespace", help="namespace (default: the default one)")
    group.add_argument("--datastore-database", help="database ID (default: (default))")


def store_options(args: argparse.Namespace) -> StoreOptions:
    """The StoreOptions the flags of add_store_options ask for; UsageError if they clash."""
    from server.store.backends import StoreOptions

    try:
        return StoreOptions(
            backend=args.store,
            project=args.datastore_project or None,
            namespace=args.datastore_namespace or None,
            database=args.datastore_database or None,
        )
    except ValueError as e:
        raise UsageError(str(e)) from e


def _non_negative(value: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        secs = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not secs >= 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return secs


def _server_url(host: str, port: int) -> str:
    shown = host
    try:
        if ipaddress.ip_address(host).is_unspecified:
            shown = "127.0.0.1"
        elif ipaddress.ip_address(host).version == 6:
            shown = f"[{host}]"
    except ValueError:
        pass
    return f"http://{shown}:{port}"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed, else asyncio's.

    uvloop (libuv) runs the same aiohttp server with about a third less CPU
    per request, measured on the bot calls (bench/b1_throughput.py); it is
    optional, as it does not build everywhere (Windows).
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


# The garbage collector's generation thresholds for `drover serve`. A server
# holding thousands of polls keeps millions of live objects (their requests,
# connections, records), and with the defaults (700, 10, 10) full
# collections of them, about every ten seconds with a 10,000-bot fleet,
# stalled the event loop for 0.3 s each (5.7 s of GC in the 3 minutes of
# bench/b3_idle.py; 1.4 s, and no full collection after the start, with
# these). Young objects are still collected every 10,000 allocations, a few
# milliseconds each, so the short-lived cycles of requests do not pile up.
GC_THRESHOLDS = (10_000, 20, 50)


async def freeze_startup_heap(_app: web.Application) -> None:
    """Takes every object the started server holds out of the garbage collector's sight.

    What a server holds once started (modules, protobuf descriptors, the
    config, the app) lives as long as the process, yet every full
    collection traversed all of it: 60,000 objects, 28-32 ms per full
    collection (`gc.collect()` in a started app, bench/in_process.py;
    under 0.1 ms once they are frozen). With GC_THRESHOLDS a full
    collection comes at most every 1,000 young ones: under a steady drain
    (126 young collections per 20,000 tasks), one such stall of the event
    loop every 160,000 tasks or so. Frozen, those objects are still freed
    by reference counting; only cycles among them would stay, and the
    garbage of the start is collected just before.
    """
    gc.collect()
    gc.freeze()


def _serve(args: argparse.Namespace) -> int:
    """Runs the server until SIGINT or SIGTERM."""
    # Imported here so that client commands start without loading the server.
    from aiohttp import web

    from server.app import ServerOptions, create_app
    from server.store.backends import StoreUnavailable

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = ServerOptions(
        state_dir=args.state_dir,
        config_dir=args.config_dir,
        server_url=args.server_url or _server_url(args.host, args.port),
        grpc_host=args.host,
        grpc_port=None if args.grpc_port < 0 else args.grpc_port,
        listen_host=args.host,
        store=store_options(args),
        recheck_secs=args.recheck_secs,
    )
    logging.getLogger("drover").info(
        "drover %s serving on %s:%d, bots use %s, state in %s",
        __version__,
        args.host,
        args.port,
        options.server_url,
        options.store.describe(),
    )
    gc.set_threshold(*GC_THRESHOLDS)

    async def app() -> web.Application:
        served = await create_app(options)
        served.on_startup.append(freeze_startup_heap)
        return served

    try:
        web.run_app(
            app(),
            host=args.host,
            port=args.port,
            print=None,
            access_log=None,
            shutdown_timeout=5.0,
            loop=new_event_loop(),
        )
    except StoreUnavailable as e:
        raise Failure(str(e)) from e
    return 0


def _validate(args: argparse.Namespace) -> int:
    from server.config.cli import validate_command

    return validate_command(str(args.dir))


def _info(args: argparse.Namespace) -> int:
    details: dict[str, Any] = client_of(args).get("/server")
    if args.json:
        render.print_json(details)
        return 0
    render.fields(
        [
            ("server", args.server),
            ("version", str(details.get("server_version", ""))),
            ("bot version", str(details.get("bot_version", ""))),
            ("canary bot version", str(details.get("canary_bot_version", ""))),
            ("config revision", str(details.get("config_revision", ""))),
            ("config loaded", render.when(details.get("config_loaded_ts", ""))),
            ("config error", str(details.get("config_error", ""))),
        ]
    )
    return 0
