"""A scripted Swarming bot API server for the bot's tests.

It records every request and answers from a script: queued poll answers
(then `sleep 0.2`), a fixed handshake answer, and replaceable handlers for
claim and task_update. Runs `http.server.ThreadingHTTPServer` on loopback
in a thread, so real bot processes can talk to it.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

API = "/swarming/api/v1/bot/"
DEFAULT_WAIT = 20.0

Reply = tuple[int, str, bytes]
Answer = dict[str, Any] | Reply | Callable[["Recorded"], "dict[str, Any] | Reply"]


@dataclasses.dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    name: str  # the path after /swarming/api/v1/bot/, e.g. "task_update/<id>"
    headers: dict[str, str]  # lower-cased names
    body: Any
    ts: float

    @property
    def endpoint(self) -> str:
        """The endpoint without its informational suffix: task_update/x → task_update."""
        return self.name.split("/", 1)[0]


def json_reply(value: Any, status: int = 200) -> Reply:
    return status, "application/json; charset=utf-8", json.dumps(value).encode()


def sleep(duration: float = 0.2) -> dict[str, Any]:
    return {"cmd": "sleep", "duration": duration}


def manifest(task_id: str, command: list[str], **fields: Any) -> dict[str, Any]:
    """A manifest with every key a stock bot requires (PROTOCOL.md 0.2.6 M1)."""
    value: dict[str, Any] = {
        "bot_dimensions": {"id": ["test-bot"], "pool": ["default"]},
        "bot_id": "test-bot",
        "command": command,
        "dimensions": {"pool": ["default"]},
        "env": {},
        "env_prefixes": {},
        "grace_period": 1,
        "hard_timeout": 60,
        "io_timeout": 0,
        "relative_cwd": "",
        "task_id": task_id,
    }
    value.update(fields)
    return value


class FakeServer:
    """The scripted server: `url`, the recorded `requests`, and the script."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.polls: collections.deque[Answer] = collections.deque()
        self.default_poll: Answer = sleep()
        self.handshake: Answer = {
            "bot_config_name": "test_config.py",
            "bot_config_rev": "rev1",
            "bot_group_cfg": {"dimensions": {"pool": ["testpool"], "group": ["g1"]}},
            "bot_version": "",
            "server_version": "fake-1",
            "session": "s-handshake",
        }
        self.task_update: Callable[[Recorded], dict[str, Any] | Reply] = lambda r: {
            "ok": True,
            "must_stop": False,
        }
        self.claim: Callable[[Recorded], dict[str, Any] | Reply] = self._default_claim
        # oauth_token and id_token; by default the task's account mints nothing.
        self.tokens: Callable[[Recorded], dict[str, Any] | Reply] = lambda r: {
            "service_account": "none"
        }
        self.bot_code: dict[str, bytes] = {}
        self.ping: Reply = (200, "text/plain", b"Server up")
        self.manifests: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    # -- script helpers ------------------------------------------------------

    def run(self, task_manifest: dict[str, Any]) -> None:
        """Queues a `run` poll answer (claim answers it with the same manifest)."""
        self.manifests[task_manifest["task_id"]] = task_manifest
        self.polls.append({"cmd": "run", "manifest": task_manifest})

    def _default_claim(self, rec: Recorded) -> dict[str, Any]:
        found = self.manifests.get(rec.body.get("task_id"))
        if found is None:
            return {"cmd": "skip", "reason": "unknown task"}
        return {"cmd": "run", "manifest": found}

    # -- queries -------------------------------------------------------------

    def of(self, endpoint: str) -> list[Recorded]:
        """Requests to `endpoint` so far, in order."""
        with self._cond:
            return [r for r in self.requests if r.endpoint == endpoint]

    def wait_for(
        self, predicate: Callable[[Recorded], bool], timeout: float = DEFAULT_WAIT
    ) -> Recorded:
        """The first recorded request matching `predicate`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for rec in self.requests:
                    if predicate(rec):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(r.method, r.name) for r in self.requests[-20:]]
                    raise AssertionError(f"no matching request within {timeout}s; last: {seen}")
                self._cond.wait(left)

    def wait_event(self, event: str, contains: str = "", timeout: float = DEFAULT_WAIT) -> Recorded:
        """Waits for an event of this type whose message contains `contains`."""
        return self.wait_for(
            lambda r: (
                r.endpoint == "event"
                and r.body.get("event") == event
                and contains in r.body.get("message", "")
            ),
            timeout,
        )

    def wait_final(self, task_id: str, timeout: float = DEFAULT_WAIT) -> Recorded:
        """Waits for the completion update of `task_id`."""
        return self.wait_for(
            lambda r: (
                r.endpoint == "task_update"
                and r.body.get("task_id") == task_id
                and ("exit_code" in r.body or r.body.get("canceled"))
            ),
            timeout,
        )

    def updates(self, task_id: str) -> list[Recorded]:
        """The task_updates received for `task_id`."""
        return [r for r in self.of("task_update") if r.body.get("task_id") == task_id]

    def output(self, task_id: str) -> bytes:
        """The task's output reassembled from offsets; fails on a gap."""
        data = bytearray()
        for rec in self.updates(task_id):
            if "output" not in rec.body:
                continue
            chunk = base64.b64decode(rec.body["output"])
            start = rec.body["output_chunk_start"]
            assert start <= len(data), f"gap: chunk at {start}, have {len(data)}"
            data[start : start + len(chunk)] = chunk
        return bytes(data)

    # -- HTTP side -------------------------------------------------------------

    def _answer(self, rec: Recorded) -> Reply:
        if rec.method == "GET" and rec.name == "server_ping":
            return self.ping
        if rec.method == "GET" and rec.endpoint == "bot_code":
            code = self.bot_code.get(rec.name.split("/", 1)[1])
            if code is None:
                return json_reply({"error": "unknown version"}, 404)
            return 200, "application/octet-stream", code
        answer: Answer
        if rec.endpoint == "handshake":
            answer = self.handshake
        elif rec.endpoint == "poll":
            answer = self.polls.popleft() if self.polls else self.default_poll
        elif rec.endpoint == "claim":
            answer = self.claim
        elif rec.endpoint == "task_update":
            answer = self.task_update
        elif rec.endpoint in ("oauth_token", "id_token"):
            answer = self.tokens
        elif rec.endpoint in ("event", "task_error"):
            answer = {}
        else:
            return json_reply({"error": f"no such endpoint {rec.name}"}, 404)
        if callable(answer):
            answer = answer(rec)
        return answer if isinstance(answer, tuple) else json_reply(answer)

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not self.path.startswith(API):
                    self._send((404, "text/plain", b"not found"))
                    return
                rec = Recorded(
                    method=self.command,
                    name=self.path[len(API) :],
                    # Header names are case-insensitive (urllib title-cases them).
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw) if raw else None,
                    ts=time.monotonic(),
                )
                reply = server._answer(rec)
                with server._cond:
                    server.requests.append(rec)
                    server._cond.notify_all()
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                status, ctype, body = reply
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
