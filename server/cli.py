"""The `drover` command line: `serve` and `config validate` (more to come)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import pathlib
import sys
from collections.abc import Sequence

from aiohttp import web

from server import __version__

DEFAULT_PORT = 8080
DEFAULT_GRPC_PORT = 8081


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drover", description=__doc__)
    parser.add_argument("--version", action="version", version=f"drover {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

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

    config = sub.add_parser("config", help="config tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    validate = config_sub.add_parser("validate", help="validate a config directory")
    validate.add_argument("dir", type=pathlib.Path)
    return parser


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


def serve(args: argparse.Namespace) -> int:
    """Runs the server until SIGINT or SIGTERM."""
    from server.app import ServerOptions, create_app

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
    )
    logging.getLogger("drover").info(
        "drover %s serving on %s:%d, bots use %s",
        __version__,
        args.host,
        args.port,
        options.server_url,
    )
    web.run_app(
        create_app(options),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        shutdown_timeout=5.0,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `drover` console script."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "config":
        from server.config.cli import validate_command

        return validate_command(str(args.dir))
    return 2


if __name__ == "__main__":
    sys.exit(main())
