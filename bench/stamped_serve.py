"""`drover serve`, stamping each task's way through the server (bench/b2_latency.py --parts).

    python bench/stamped_serve.py STAMPS.json serve ...

The server's app gets an outermost middleware and a response-prepare hook
that note, on the monotonic clock the bench's client reads too
(time.perf_counter is CLOCK_MONOTONIC on Linux, one clock for every
process), when each create call (POST /api/v1/tasks) entered the app and
when the answer that carried each task to its bot was about to be written.
The stamps, by task (summary) ID, are written to STAMPS.json when the
server exits. With them, a submit-to-start latency splits into the way to
the server, the time in it, and the way back to the bot
(bench/open_loop.py).

The stamps are a dictionary insert and a JSON read of the small answers
that carry a task ID, so only runs that ask for the parts use this.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from sim_bots import summary_id

import server.app
from server import jsonio
from server.cli import main

CREATE_PATH = "/api/v1/tasks"
POLL_PATH = "/swarming/api/v1/bot/poll"
# The request key under which the middleware leaves a create's entry time.
ENTERED = "bench_entered"

_stamps: dict[str, dict[str, float]] = {}


@web.middleware
async def _entered(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.method == "POST" and request.path == CREATE_PATH:
        request[ENTERED] = time.perf_counter()
    return await handler(request)


async def _prepared(request: web.Request, response: web.StreamResponse) -> None:
    """Files a create's entry time under the task ID its answer names; stamps a poll's answer."""
    now = time.perf_counter()
    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or b'"task_id"' not in body:
        return
    if ENTERED in request:
        task_id = str(jsonio.loads(body).get("task_id", ""))
        if task_id:
            _stamps.setdefault(summary_id(task_id), {})["entered"] = request[ENTERED]
    elif request.path == POLL_PATH:
        manifest = jsonio.loads(body).get("manifest") or {}
        task_id = str(manifest.get("task_id", ""))
        if task_id:
            _stamps.setdefault(summary_id(task_id), {})["poll_answered"] = now


def _stamping(create_app: Callable[..., Awaitable[web.Application]]) -> Callable[..., Any]:
    async def stamped(*args: Any, **kwargs: Any) -> web.Application:
        app = await create_app(*args, **kwargs)
        app.middlewares.insert(0, _entered)
        app.on_response_prepare.append(_prepared)
        return app

    return stamped


def serve(stamps_path: Path, argv: list[str]) -> int:
    """Runs the drover command line `argv` with stamps; writes them on the way out."""
    server.app.create_app = _stamping(server.app.create_app)
    try:
        return main(argv)
    finally:
        # Written beside and renamed, so a reader never sees half a file.
        partial = stamps_path.with_name(stamps_path.name + ".partial")
        partial.write_text(json.dumps(_stamps))
        os.replace(partial, stamps_path)


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1]), sys.argv[2:]))
