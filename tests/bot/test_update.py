"""Self-update (PROTOCOL.md 2.3): slots, digest check, is_fine, LKGBC."""

from __future__ import annotations

import pathlib
import time

from bot import archive
from tests.bot import botzip
from tests.bot.conftest import StartBot, wait_until
from tests.bot.fakeserver import FakeServer


def serve(
    server: FakeServer,
    path: pathlib.Path,
    *,
    server_version: str = "test",
    replace: dict[str, bytes] | None = None,
) -> str:
    """Builds an archive for the fake server, serves it, returns its version."""
    files = botzip.members(server.url, server_version=server_version, replace=replace)
    version = botzip.write(path, files)
    server.bot_code[version] = path.read_bytes()
    return version


def test_update_installs_the_new_code_and_makes_it_last_known_good(
    server: FakeServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """update → download into slot 2 → bot_shutdown → handshake as the new version → LKGBC."""
    new = serve(server, tmp_path / "v2.zip", server_version="v2")
    server.polls.append({"cmd": "update", "version": new})
    bot = start_bot()
    assert new != bot.version
    server.wait_event("bot_shutdown", f"About to restart: Updating to {new}")
    handshake = server.wait_for(lambda r: r.endpoint == "handshake" and r.body["version"] == new)
    assert handshake.body["session_id"].endswith(f"/{bot.pid}")
    assert archive.digest_of_zip(str(bot.dir / "swarming_bot.2.zip")) == new
    # After an idle poll, a reboot would start the new code.
    wait_until(lambda: archive.digest_of_zip(str(bot.dir / "swarming_bot.zip")) == new)
    assert bot.proc.poll() is None


def test_bad_new_code_is_refused_and_the_old_code_keeps_running(
    server: FakeServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """is_fine fails: bot_error, the slot is deleted, a temporary quarantine, old version polls."""
    broken = serve(server, tmp_path / "bad.zip", replace={"__main__.py": b"raise SystemExit(7)\n"})
    server.polls.append({"cmd": "update", "version": broken})
    bot = start_bot()
    error = server.wait_event("bot_error", "New bot code is bad")
    assert "exit code 7" in error.body["message"]
    after = server.wait_for(lambda r: r.endpoint == "poll" and r.ts > error.ts)
    assert after.body["version"] == bot.version
    assert "Failed to self-update" in after.body["state"]["quarantined"]
    # The server stopped asking for that version: the quarantine is lifted.
    later = server.wait_for(lambda r: r.endpoint == "poll" and r.ts > after.ts)
    assert "quarantined" not in later.body["state"]
    assert not (bot.dir / "swarming_bot.2.zip").exists()
    assert len(server.of("handshake")) == 1


def test_code_that_does_not_match_its_digest_is_refused(
    server: FakeServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """Bytes whose content digest differs from the requested version are never run."""
    serve(server, tmp_path / "v2.zip", server_version="v2")
    claimed = "ab" * 32
    server.bot_code[claimed] = (tmp_path / "v2.zip").read_bytes()
    server.polls.append({"cmd": "update", "version": claimed})
    bot = start_bot()
    error = server.wait_event("bot_error", "not the requested")
    server.wait_for(lambda r: r.endpoint == "poll" and r.ts > error.ts)
    assert len(server.of("handshake")) == 1
    assert not server.of("server_ping")[1:]
    assert not (bot.dir / "swarming_bot.2.zip").exists()


def test_a_version_that_failed_is_not_retried_at_once(
    server: FakeServer, start_bot: StartBot, tmp_path: pathlib.Path
) -> None:
    """The server insisting on a failed version gets slow polls, not repeated downloads."""
    broken = serve(server, tmp_path / "bad.zip", replace={"__main__.py": b"raise SystemExit(7)\n"})
    server.default_poll = {"cmd": "update", "version": broken}
    start_bot()
    error = server.wait_event("bot_error", "New bot code is bad")
    retry = server.wait_for(lambda r: r.endpoint == "poll" and r.ts > error.ts)
    time.sleep(1)
    assert len(server.of("bot_code")) == 1
    assert len(server.of("poll")) == 2
    assert "Failed to self-update" in retry.body["state"]["quarantined"]
