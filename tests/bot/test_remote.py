"""The HTTP client: headers, sessions, and which failures it retries."""

from __future__ import annotations

import pytest

from bot import remote
from tests.bot.fakeserver import FakeServer, json_reply


def client(server: FakeServer, **kwargs: object) -> remote.Remote:
    return remote.Remote(
        server.url,
        bot_id="b1",
        version="v1",
        hostname="host",
        auth_headers=lambda: {"Authorization": "Bearer t"},
        **kwargs,  # type: ignore[arg-type]
    )


def test_json_calls_carry_the_bot_headers_and_compact_sorted_json(server: FakeServer) -> None:
    """Content type, bot ID, user agent and the hook's credentials are all sent."""
    server.polls.append({"cmd": "sleep", "duration": 1})
    answer = client(server).post_json("poll", {"z": 1, "a": [1, 2]})
    assert answer == {"cmd": "sleep", "duration": 1}
    rec = server.of("poll")[0]
    assert rec.headers["content-type"] == "application/json; charset=UTF-8"
    assert rec.headers["x-luci-swarming-bot-id"] == "b1"
    assert rec.headers["user-agent"] == "drover_bot/v1@host"
    assert rec.headers["authorization"] == "Bearer t"
    assert rec.body == {"a": [1, 2], "z": 1}


def test_session_is_adopted_from_answers_only_when_truthy(server: FakeServer) -> None:
    """A non-empty session replaces the token; a missing or empty one keeps it (S1)."""
    c = client(server, session="s0")
    server.polls.extend([{"cmd": "x", "session": "s1"}, {"cmd": "x"}, {"cmd": "x", "session": ""}])
    c.post_json("poll", {})
    assert c.session == "s1"
    c.post_json("poll", {})
    c.post_json("poll", {})
    assert c.session == "s1"


def test_transient_failures_are_retried_with_the_same_body(server: FakeServer) -> None:
    """A 500 and a non-JSON 404 are retried; the answer after them is returned."""
    server.polls.extend([(500, "text/plain", b"oops"), (404, "text/html", b"<p>"), {"cmd": "ok"}])
    assert client(server).post_json("poll", {"n": 1}, budget=30) == {"cmd": "ok"}
    bodies = [r.body for r in server.of("poll")]
    assert bodies == [{"n": 1}] * 3


@pytest.mark.parametrize(
    "reply",
    [
        json_reply({"error": "gone"}, 404),
        (400, "text/plain", b"bad"),
        (401, "text/plain", b"who"),
        json_reply({"error": "x"}, 200),
        (200, "text/plain", b"not json"),
    ],
)
def test_final_failures_are_not_retried(server: FakeServer, reply: tuple[int, str, bytes]) -> None:
    """A JSON 404, other 4xx, an error object or a non-JSON body end the call at once."""
    server.polls.extend([reply, {"cmd": "never"}])
    with pytest.raises(remote.RemoteError):
        client(server).post_json("poll", {}, budget=30)
    assert len(server.of("poll")) == 1


def test_zero_budget_means_one_attempt(server: FakeServer) -> None:
    """The poll's budget is 0: the main loop, not the client, retries it."""
    server.polls.extend([(503, "text/plain", b"busy"), {"cmd": "never"}])
    with pytest.raises(remote.RemoteError) as info:
        client(server).post_json("poll", {}, budget=0)
    assert info.value.status == 503
    assert len(server.of("poll")) == 1


def test_ping_sends_no_bot_id(server: FakeServer) -> None:
    """server_ping is a bare GET, like the stock bot's (T9)."""
    assert client(server).ping()
    rec = server.of("server_ping")[0]
    assert rec.method == "GET"
    assert "x-luci-swarming-bot-id" not in rec.headers


def test_bot_code_download(server: FakeServer) -> None:
    """bot_code/<version> returns the bytes; an unknown version fails."""
    server.bot_code["ab" * 32] = b"zipbytes"
    c = client(server)
    assert c.get_bot_code("ab" * 32) == b"zipbytes"
    with pytest.raises(remote.RemoteError):
        c.get_bot_code("cd" * 32, budget=0)
    assert server.of("bot_code")[0].headers["x-luci-swarming-bot-id"] == "b1"
