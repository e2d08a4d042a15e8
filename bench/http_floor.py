"""B1's HTTP floor: the bench's bots against a server that only answers.

A stand-in for `drover serve` on the same aiohttp, event loop (uvloop) and
garbage-collector settings, answering the three calls of B1's drain with
no state, no authentication and no store: `handshake` with a session,
`poll` with the next of N `run` answers (a manifest of the size and keys
Drover's has, PROTOCOL.md 1.6) and then `sleep`, `task_update` with
`{"ok": true, "must_stop": false}`. Each body is read as JSON as Drover
reads it. Draining N tasks through it with the bots and client of B1 gives
the most tasks per second that HTTP, aiohttp and this harness allow on the
machine: Drover's drain as a fraction of it is how much of the cost is
Drover's own (bench/b1_throughput.py reports both).

    .venv/bin/python bench/http_floor.py --port P --tasks N
"""

from __future__ import annotations

import argparse
import gc
import itertools
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server import jsonio  # noqa: E402
from server.cli.serve import GC_THRESHOLDS, new_event_loop  # noqa: E402

BOT_API = "/swarming/api/v1/bot"
SESSION = "floor-session-" + "x" * 200


def manifest(run_id: str, bot_id: str) -> dict[str, Any]:
    """A no-op task's manifest, with every key Drover's has (server/scheduler/manifest.py)."""
    return {
        "bot_authenticated_as": f"bot:{bot_id}",
        "bot_dimensions": {"id": [bot_id], "os": ["Linux"], "pool": ["default"]},
        "bot_id": bot_id,
        "caches": [],
        "cas_input_root": None,
        "cipd_input": None,
        "command": ["true"],
        "containment": {"containment_type": 0},
        "dimensions": {"pool": ["default"]},
        "env": {},
        "env_prefixes": {},
        "grace_period": 30,
        "hard_timeout": 60,
        "host": "http://127.0.0.1",
        "io_timeout": 1200,
        "outputs": [],
        "realm": None,
        "relative_cwd": "",
        "resultdb": None,
        "secret_bytes": None,
        "service_accounts": {
            "system": {"service_account": "none"},
            "task": {"service_account": "none"},
        },
        "task_id": run_id,
    }


def make_app(tasks: int) -> web.Application:
    """The stand-in's routes; the first `tasks` polls get a task each."""
    numbers = itertools.count(1)

    async def body(request: web.Request) -> dict[str, Any]:
        value: dict[str, Any] = jsonio.loads(await request.read())
        return value

    def answer(payload: dict[str, Any]) -> web.Response:
        return web.Response(
            body=jsonio.dumps_bytes(payload), content_type="application/json", charset="utf-8"
        )

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="Server up")

    async def handshake(request: web.Request) -> web.Response:
        await body(request)
        return answer({"session": SESSION, "bot_version": "floor", "server_version": "floor"})

    async def poll(request: web.Request) -> web.Response:
        bot_id = (await body(request))["dimensions"]["id"][0]
        n = next(numbers)
        if n > tasks:
            return answer({"cmd": "sleep", "duration": 1.0, "quarantined": False})
        run_id = f"{n:015x}1"
        return answer({"cmd": "run", "manifest": manifest(run_id, bot_id), "session": SESSION})

    async def task_update(request: web.Request) -> web.Response:
        await body(request)
        return answer({"ok": True, "must_stop": False})

    app = web.Application()
    app.add_routes(
        [
            web.get(f"{BOT_API}/server_ping", ping),
            web.post(f"{BOT_API}/handshake", handshake),
            web.post(f"{BOT_API}/poll", poll),
            web.post(f"{BOT_API}/task_update/{{run_id}}", task_update),
        ]
    )
    return app


def command(port: int, tasks: int) -> list[str]:
    """The command line that starts the stand-in."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--port",
        str(port),
        "--tasks",
        str(tasks),
    ]


def main() -> None:
    """Serves on 127.0.0.1 until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tasks", type=int, required=True)
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)
    web.run_app(
        make_app(args.tasks),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        loop=new_event_loop(),
    )


if __name__ == "__main__":
    main()
