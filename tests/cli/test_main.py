"""How `drover` reports failures and reads its global options.

Usage errors exit 2, API errors and an unreachable server exit 1 with one line
on stderr, and none of them prints a traceback.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.cli.conftest import Cli, free_port, run_drover
from tests.e2e.conftest import DroverServer


def test_unknown_task_exits_1_with_the_servers_message(drover: DroverServer, cli: Cli) -> None:
    """The server's error message, exactly, is what `drover task` prints."""
    with pytest.raises(urllib.error.HTTPError) as raised:
        drover.call("GET", "/api/v1/tasks/0123456789abcd0")
    message = json.loads(raised.value.read())["error"]["message"]
    run = cli("task", "0123456789abcd0")
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr == f"drover: {message}\n"


def test_unreachable_server_exits_1_with_a_clear_message() -> None:
    """A server that refuses connections gets one line naming its URL, no traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    run = run_drover("--server", url, "tasks")
    assert run.returncode == 1
    assert run.stderr.startswith(f"drover: cannot reach the server at {url}: ")
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["cancel"],
        ["cancel", "abc", "--tag", "a:b"],
        ["cancel", "abc", "--dry-run"],
        ["trigger"],
        ["trigger", "-d", "novalue", "--", "true"],
        ["trigger", "--pool", "a", "-d", "pool=b", "--", "true"],
        ["trigger", "--tag", "notatag", "--", "true"],
        ["reprioritize", "abc", "high"],
        ["reprioritize", "7"],
        ["pause"],
        ["retry", "abc", "--dry-run"],
        ["restart", "abc", "--tag", "a:b"],
        ["results"],
        ["results", "abc", "--tag", "a:b"],
        ["token", "create", "--name", "x"],
        ["token", "create", "--name", "x", "--role", "admin", "--expires-in", "soon"],
        ["token", "revoke"],
        ["tasks", "--state", "sleeping"],
        ["bots", "--dead", "--alive"],
        ["--server", "localhost:8080", "tasks"],
        ["no-such-command"],
    ],
)
def test_usage_errors_exit_2_before_calling_the_server(args: list[str]) -> None:
    """A malformed command line exits 2 with an error line, without reaching the server."""
    run = run_drover("--server", f"http://127.0.0.1:{free_port()}", *args)
    assert run.returncode == 2, run.stderr
    assert "error:" in run.stderr
    assert "cannot reach" not in run.stderr


def test_server_comes_from_the_environment(drover: DroverServer) -> None:
    """Without --server, $DROVER_SERVER says where the server is."""
    run = run_drover("tasks", "--json", env={"DROVER_SERVER": drover.url})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["items"] == []


def test_global_options_also_work_after_the_command(drover: DroverServer) -> None:
    """`drover tasks --json --server URL` means the same as putting them first."""
    run = run_drover("tasks", "--json", "--server", drover.url)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"items": [], "cursor": ""}


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Remembers the headers of every GET; answers the task list with JSON, the server
    details with HTML, and anything else with a proxy's 502 page."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        status, kind, body = 502, "text/html", b"<h1>Bad Gateway</h1>"
        if self.path.startswith("/api/v1/tasks"):
            status, kind, body = 200, "application/json", b'{"items": [], "cursor": ""}'
        elif self.path.startswith("/api/v1/server"):
            status, kind, body = 200, "text/html", b"<h1>Welcome</h1>"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # Keep the test output clean.


@pytest.fixture
def recorder() -> Iterator[str]:
    """A fake server on loopback that records request headers; yields its URL."""
    _Recorder.seen = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_token_is_sent_as_a_bearer_header(recorder: str) -> None:
    """$DROVER_TOKEN, or --token over it, goes out as `Authorization: Bearer`."""
    run_drover("--server", recorder, "tasks", env={"DROVER_TOKEN": "from-env"})
    run_drover("--server", recorder, "tasks", "--token", "s3cret", env={"DROVER_TOKEN": "x"})
    run_drover("--server", recorder, "tasks")
    sent = [h.get("Authorization") for h in _Recorder.seen]
    assert sent == ["Bearer from-env", "Bearer s3cret", None]


def test_answers_that_are_not_the_apis_json_give_one_clear_line(recorder: str) -> None:
    """A non-JSON success and a non-JSON error page each exit 1 with one line, no traceback."""
    run = run_drover("--server", recorder, "info")
    assert run.returncode == 1
    assert run.stderr == (
        f"drover: the server at {recorder} did not answer with JSON; is it a Drover server?\n"
    )
    run = run_drover("--server", recorder, "bot", "x")
    assert run.returncode == 1
    assert run.stderr == "drover: HTTP 502 Bad Gateway\n"
