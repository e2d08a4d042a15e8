"""Bot archives, their content digests and channel selection (server/botcode.py)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bot import archive as bot_archive
from protos.config import bots_pb2, pools_pb2, settings_pb2
from server import botcode
from server.botcode import BotCode
from server.config.model import ConfigSnapshot, Settings

URL = "http://127.0.0.1:8080"
HOOKS = "def get_dimensions(bot):\n    return {}\n"
# Prints the archive's config.json, which it finds through its own path.
MAIN = (
    b"import sys, zipfile\n"
    b"print('fake bot', zipfile.ZipFile(sys.argv[0]).read('config/config.json').decode())\n"
)


@pytest.fixture
def bot_dir(tmp_path: Path) -> Path:
    """A fake bot package: a few sources, plus files the archive must leave out."""
    root = tmp_path / "bot"
    (root / "sub").mkdir(parents=True)
    (root / "__pycache__").mkdir()
    (root / "tests").mkdir()
    (root / "__main__.py").write_bytes(MAIN)
    (root / "__init__.py").write_bytes(b"")
    (root / "sub" / "__init__.py").write_bytes(b"")
    (root / "sub" / "mod.py").write_bytes(b"VALUE = 1\n")
    (root / "__pycache__" / "mod.cpython-311.py").write_bytes(b"cached")
    (root / "tests" / "test_mod.py").write_bytes(b"def test(): pass\n")
    (root / "README.md").write_bytes(b"not code")
    return root


def make_snapshot(revision: str = "r1", hooks: str = HOOKS, **settings: object) -> ConfigSnapshot:
    """A config snapshot with these settings.cfg values and base hooks script."""
    return ConfigSnapshot(
        revision=revision,
        loaded_ts=0.0,
        config_dir="",
        bots=bots_pb2.BotsCfg(),
        pools=pools_pb2.PoolsCfg(),
        settings_proto=settings_pb2.SettingsCfg(),
        settings=Settings(**settings),  # type: ignore[arg-type]  # test-only passthrough
        groups=(),
        base_hooks_script=hooks,
    )


def build(bot_dir: Path, url: str = URL, hooks: str = HOOKS) -> bytes:
    """Builds an archive with test defaults."""
    return botcode.build_archive(
        bot_dir, server_url=url, base_hooks_script=hooks, server_version="drover-test"
    )


def make_zip(members: dict[str, bytes], *, directories: tuple[str, ...] = ()) -> bytes:
    """A plain zip (current timestamps) standing for a prebuilt archive."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in directories:
            zf.writestr(zipfile.ZipInfo(name), b"")
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def reference_digest(members: dict[str, bytes]) -> str:
    """PROTOCOL.md 2.3 written out independently: one concatenation, hashed once.

    Like the stock bot, a name's length counts characters, not UTF-8 bytes.
    """
    parts = []
    for name in sorted(members):
        raw = name.encode()
        parts += [b"%d" % len(name), raw, b"%d" % len(members[name]), members[name]]
    return hashlib.sha256(b"".join(parts)).hexdigest()


def test_content_digest_matches_an_independent_computation() -> None:
    """The digest is SHA-256 over length-prefixed names and contents, sorted by name."""
    members = {"z.py": b"last", "a/b.py": b"x" * 1000, "é.py": b"utf-8 name", "e": b""}
    assert botcode.content_digest(members) == reference_digest(members)
    assert botcode.content_digest(dict(reversed(members.items()))) == reference_digest(members)


def test_content_digest_lengths_prevent_boundary_collisions() -> None:
    """Moving bytes between a name and its content changes the digest."""
    assert botcode.content_digest({"ab": b"c"}) != botcode.content_digest({"a": b"bc"})


def test_content_digest_agrees_with_the_bot() -> None:
    """The server's digest and the bot's own (bot/archive.py) are the same function."""
    members = {"bot/__main__.py": b"main", "config/config.json": b"{}", "ü/x.py": b"1"}
    assert botcode.content_digest(members) == bot_archive.content_digest(members)


def test_archive_members_and_layout(bot_dir: Path) -> None:
    """The archive holds the .py sources under bot/, the root main and the two config files."""
    data = build(bot_dir)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert names == sorted(names)
        assert names == [
            "__main__.py",
            "bot/__init__.py",
            "bot/__main__.py",
            "bot/sub/__init__.py",
            "bot/sub/mod.py",
            "config/bot_config.py",
            "config/config.json",
        ]
        assert zf.read("__main__.py") == MAIN
        assert zf.read("bot/sub/mod.py") == b"VALUE = 1\n"
        assert zf.read("config/bot_config.py") == HOOKS.encode()
        assert zf.read("config/config.json") == (
            b'{"server":"http://127.0.0.1:8080","server_version":"drover-test"}'
        )


def test_archive_entries_have_fixed_metadata(bot_dir: Path) -> None:
    """Every entry is deflated, dated 1980-01-01 and a regular rw-r--r-- file."""
    with zipfile.ZipFile(io.BytesIO(build(bot_dir))) as zf:
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.external_attr >> 16 == 0o100644
            assert info.create_system == 3


def test_builds_are_byte_identical(bot_dir: Path) -> None:
    """Same inputs give the same bytes, even after the files' mtimes change."""
    first = build(bot_dir)
    os.utime(bot_dir / "sub" / "mod.py", (1, 1))
    assert build(bot_dir) == first


def test_every_input_changes_the_digest(bot_dir: Path) -> None:
    """The URL, the hooks script and the sources each change the version."""
    base = botcode.digest_of_zip(build(bot_dir))
    assert botcode.digest_of_zip(build(bot_dir, url="http://other:1")) != base
    assert botcode.digest_of_zip(build(bot_dir, hooks="# changed\n")) != base
    (bot_dir / "sub" / "mod.py").write_bytes(b"VALUE = 2\n")
    assert botcode.digest_of_zip(build(bot_dir)) != base


def test_digest_of_zip_matches_the_members_digest(bot_dir: Path, tmp_path: Path) -> None:
    """digest_of_zip of the built bytes equals the digest of its members and the bot's view."""
    data = build(bot_dir)
    members = botcode.archive_members(
        bot_dir, server_url=URL, base_hooks_script=HOOKS, server_version="drover-test"
    )
    assert botcode.digest_of_zip(data) == botcode.content_digest(members)
    assert botcode.digest_of_zip(data) == reference_digest(members)
    path = tmp_path / "swarming_bot.zip"
    path.write_bytes(data)
    assert bot_archive.digest_of_zip(str(path)) == botcode.digest_of_zip(data)


def test_digest_of_zip_counts_directory_entries_like_the_stock_bot() -> None:
    """Directory entries count as empty members, as in zip_package.generate_version."""
    members = {"a/x.py": b"1", "b.py": b"2"}
    with_dirs = make_zip(members, directories=("a/",))
    assert botcode.digest_of_zip(with_dirs) == botcode.content_digest({**members, "a/": b""})
    assert botcode.digest_of_zip(with_dirs) != botcode.content_digest(members)


def test_trailing_slash_and_missing_main_are_refused(bot_dir: Path) -> None:
    """A server URL ending in "/" or a bot dir without __main__.py raises ValueError."""
    with pytest.raises(ValueError, match="trailing slash"):
        build(bot_dir, url=URL + "/")
    with pytest.raises(ValueError, match="trailing slash"):
        build(bot_dir, url="")
    (bot_dir / "__main__.py").unlink()
    with pytest.raises(ValueError, match=r"no __main__\.py"):
        build(bot_dir)


def test_archive_runs_as_a_script(bot_dir: Path, tmp_path: Path) -> None:
    """`python swarming_bot.zip` runs the root __main__.py, which can read its config."""
    path = tmp_path / "swarming_bot.zip"
    path.write_bytes(build(bot_dir))
    out = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.startswith("fake bot ")
    assert json.loads(out.removeprefix("fake bot "))["server"] == URL


def test_canary_slot_is_deterministic_and_in_range() -> None:
    """A bot's slot is a pure function of its ID, in 0..99, by the documented formula."""
    head = hashlib.sha256(b"bot-channel:bot1").digest()[:2]
    assert botcode.canary_slot("bot1") == (head[0] + 256 * head[1]) * 100 // 65536
    slots = [botcode.canary_slot(f"bot-{i}") for i in range(1000)]
    assert slots == [botcode.canary_slot(f"bot-{i}") for i in range(1000)]
    assert min(slots) >= 0
    assert max(slots) <= 99


ArchiveFile = Callable[[str, dict[str, bytes]], Path]


@pytest.fixture
def archive_file(tmp_path: Path) -> ArchiveFile:
    """Writes a prebuilt archive with these members; returns its path."""

    def write(name: str, members: dict[str, bytes]) -> Path:
        path = tmp_path / name
        path.write_bytes(make_zip(members))
        return path

    return write


def test_stable_is_built_from_the_bot_dir(bot_dir: Path) -> None:
    """Without prebuilt files every bot gets the archive built from bot_dir."""
    code = BotCode(make_snapshot(), server_url=URL, bot_dir=bot_dir, server_version="drover-test")
    assert code.stable.data == build(bot_dir)
    assert code.stable.digest == botcode.digest_of_zip(code.stable.data)
    assert code.canary is None
    assert "built from" in code.stable.source
    assert code.for_bot("bot1") is code.stable


def test_prebuilt_stable_is_served_as_is(bot_dir: Path, archive_file: ArchiveFile) -> None:
    """A prebuilt stable archive is served byte for byte, versioned by its content digest."""
    path = archive_file("stock.zip", {"__main__.py": b"print(1)", "config/config.json": b"{}"})
    snapshot = make_snapshot(stable_archive_file=str(path))
    code = BotCode(snapshot, server_url=URL, bot_dir=bot_dir)
    assert code.stable.data == path.read_bytes()
    assert code.stable.digest == botcode.digest_of_zip(path.read_bytes())
    assert code.stable.source == f"prebuilt {path}"
    assert code.get(code.stable.digest) is code.stable


def test_prebuilt_with_directories_gets_the_stock_digest(bot_dir: Path, tmp_path: Path) -> None:
    """A prebuilt archive with directory entries is versioned as the stock bot versions itself."""
    path = tmp_path / "dirs.zip"
    path.write_bytes(make_zip({"a/x.py": b"1"}, directories=("a/",)))
    code = BotCode(make_snapshot(stable_archive_file=str(path)), server_url=URL, bot_dir=bot_dir)
    assert code.stable.digest == reference_digest({"a/": b"", "a/x.py": b"1"})


def test_canary_share(bot_dir: Path, archive_file: ArchiveFile) -> None:
    """About canary_percent of 1000 bots get the canary, always the same ones."""
    canary_path = archive_file("canary.zip", {"__main__.py": b"print('canary')"})
    snapshot = make_snapshot(canary_archive_file=str(canary_path), canary_percent=30)
    code = BotCode(snapshot, server_url=URL, bot_dir=bot_dir)
    assert code.canary is not None
    picks = {f"bot-{i}": code.for_bot(f"bot-{i}") for i in range(1000)}
    on_canary = [bot_id for bot_id, a in picks.items() if a is code.canary]
    assert 200 <= len(on_canary) <= 400
    assert all(botcode.canary_slot(bot_id) < 30 for bot_id in on_canary)
    assert all(code.for_bot(bot_id) is picks[bot_id] for bot_id in picks)


@pytest.mark.parametrize(("percent", "expected"), [(0, 0), (100, 1000)])
def test_canary_share_extremes(
    bot_dir: Path, archive_file: ArchiveFile, percent: int, expected: int
) -> None:
    """canary_percent 0 sends nobody to the canary and 100 sends everybody."""
    canary_path = archive_file("canary.zip", {"__main__.py": b"print('canary')"})
    snapshot = make_snapshot(canary_archive_file=str(canary_path), canary_percent=percent)
    code = BotCode(snapshot, server_url=URL, bot_dir=bot_dir)
    count = sum(code.for_bot(f"bot-{i}") is code.canary for i in range(1000))
    assert count == expected


def test_get_accepts_only_known_digests(bot_dir: Path, archive_file: ArchiveFile) -> None:
    """get finds the stable and canary digests (any case) and nothing else."""
    canary_path = archive_file("canary.zip", {"__main__.py": b"print('canary')"})
    snapshot = make_snapshot(canary_archive_file=str(canary_path), canary_percent=10)
    code = BotCode(snapshot, server_url=URL, bot_dir=bot_dir)
    assert code.canary is not None
    assert code.get(code.stable.digest) is code.stable
    assert code.get(code.canary.digest.upper()) is code.canary
    assert code.get("0" * 64) is None
    assert code.get(code.stable.digest[:40]) is None
    assert code.get("../../etc/passwd") is None
    assert code.get("") is None


def test_update_reuses_an_unchanged_build(bot_dir: Path) -> None:
    """A new config revision with the same inputs keeps the very same archive object."""
    code = BotCode(make_snapshot("r1"), server_url=URL, bot_dir=bot_dir)
    before = code.stable
    code.update(make_snapshot("r2"))
    assert code.stable is before


def test_update_follows_a_hooks_change(bot_dir: Path) -> None:
    """A new base hooks script gives a new stable digest; the old one is no longer served."""
    code = BotCode(make_snapshot("r1"), server_url=URL, bot_dir=bot_dir)
    old = code.stable.digest
    code.update(make_snapshot("r2", hooks="# new hooks\n"))
    assert code.stable.digest != old
    assert code.get(old) is None
    with zipfile.ZipFile(io.BytesIO(code.stable.data)) as zf:
        assert zf.read("config/bot_config.py") == b"# new hooks\n"


def test_update_switches_between_built_and_prebuilt(
    bot_dir: Path, archive_file: ArchiveFile
) -> None:
    """Adding then removing a prebuilt stable file switches the source both ways."""
    code = BotCode(make_snapshot("r1"), server_url=URL, bot_dir=bot_dir)
    built = code.stable
    path = archive_file("stock.zip", {"__main__.py": b"print(1)"})
    code.update(make_snapshot("r2", stable_archive_file=str(path)))
    assert code.stable.data == path.read_bytes()
    code.update(make_snapshot("r3"))
    assert code.stable is built


def test_update_rereads_a_replaced_prebuilt_file(bot_dir: Path, archive_file: ArchiveFile) -> None:
    """A prebuilt file rewritten in place is read again on the next update."""
    path = archive_file("stock.zip", {"__main__.py": b"print(1)"})
    code = BotCode(make_snapshot(stable_archive_file=str(path)), server_url=URL, bot_dir=bot_dir)
    old = code.stable.digest
    archive_file("stock.zip", {"__main__.py": b"print(2)  # a longer file"})
    code.update(make_snapshot("r2", stable_archive_file=str(path)))
    assert code.stable.digest != old
    assert code.stable.data == path.read_bytes()


def test_update_failure_keeps_serving(
    bot_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A config naming an unusable archive leaves the current archives in place and logs why."""
    code = BotCode(make_snapshot("r1"), server_url=URL, bot_dir=bot_dir)
    before = code.stable
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with caplog.at_level(logging.ERROR, logger="drover.botcode"):
        code.update(make_snapshot("r2", stable_archive_file=str(bad)))
        code.update(make_snapshot("r3", stable_archive_file=str(tmp_path / "missing.zip")))
    assert code.stable is before
    assert "r2" in caplog.text
    assert "r3" in caplog.text


def test_constructor_refuses_an_unusable_archive(bot_dir: Path, tmp_path: Path) -> None:
    """At startup a missing prebuilt file raises: a server must not run without bot code."""
    with pytest.raises(OSError, match=r"missing\.zip"):
        BotCode(
            make_snapshot(stable_archive_file=str(tmp_path / "missing.zip")),
            server_url=URL,
            bot_dir=bot_dir,
        )
