"""The command line: version, is_fine, attributes, and running from source."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from bot import archive
from tests.bot import botzip
from tests.bot.conftest import bot_env
from tests.bot.fakeserver import FakeServer, json_reply

ROOT = botzip.BOT_DIR.parent


def run(args: list[str], cwd: pathlib.Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=bot_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_is_the_zip_content_digest(tmp_path: pathlib.Path, server: FakeServer) -> None:
    """`version` prints the digest the server computes for the same archive."""
    zip_path = tmp_path / "swarming_bot.zip"
    expected = botzip.build(zip_path, server.url)
    result = run([str(zip_path), "version"], tmp_path)
    assert result.stdout.strip() == expected == archive.digest_of_zip(str(zip_path))


def test_is_fine_passes_with_a_reachable_server(tmp_path: pathlib.Path, server: FakeServer) -> None:
    """is_fine imports everything, loads the hooks and pings: exit 0."""
    zip_path = tmp_path / "swarming_bot.zip"
    botzip.build(zip_path, server.url)
    result = run([str(zip_path), "is_fine"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert server.of("server_ping")


def test_is_fine_fails_when_the_ping_fails(tmp_path: pathlib.Path, server: FakeServer) -> None:
    """A final (JSON 404) server_ping answer makes is_fine exit 1."""
    server.ping = json_reply({"error": "no"}, 404)
    zip_path = tmp_path / "swarming_bot.zip"
    botzip.build(zip_path, server.url)
    result = run([str(zip_path), "is_fine"], tmp_path)
    assert result.returncode == 1
    assert "server_ping" in result.stderr


def test_is_fine_fails_on_broken_base_hooks(tmp_path: pathlib.Path, server: FakeServer) -> None:
    """An archive whose config/bot_config.py does not compile is not fine."""
    zip_path = tmp_path / "swarming_bot.zip"
    botzip.build(zip_path, server.url, bot_config="def get_state(:\n")
    result = run([str(zip_path), "is_fine"], tmp_path)
    assert result.returncode == 1
    assert "invalid base bot_config.py" in result.stderr


def test_attributes_prints_dimensions_state_and_version(
    tmp_path: pathlib.Path, server: FakeServer
) -> None:
    """`attributes` shows what the bot would report, base hooks applied."""
    zip_path = tmp_path / "swarming_bot.zip"
    version = botzip.build(zip_path, server.url)
    result = run([str(zip_path), "attributes"], tmp_path)
    report = json.loads(result.stdout)
    assert report["version"] == version
    assert report["dimensions"]["id"] == ["test-bot"]
    assert report["state"]["base_hooks"] is True


def test_source_tree_needs_a_server_and_hashes_its_files(tmp_path: pathlib.Path) -> None:
    """`python -m bot` takes --server (or $DROVER_SERVER); its version digests bot/*.py."""
    missing = run(["-m", "bot", "version"], tmp_path, PYTHONPATH=str(ROOT))
    assert missing.returncode == 2
    assert "--server" in missing.stderr
    by_flag = run(["-m", "bot", "version", "--server", "http://x"], tmp_path, PYTHONPATH=str(ROOT))
    by_env = run(["-m", "bot", "version"], tmp_path, PYTHONPATH=str(ROOT), DROVER_SERVER="http://x")
    expected = archive.content_digest(archive.source_members(str(botzip.BOT_DIR)))
    assert by_flag.stdout.strip() == by_env.stdout.strip() == expected
