"""The content digest (PROTOCOL.md 2.3) that names every bot version."""

from __future__ import annotations

import hashlib
import pathlib
import zipfile

from bot import archive
from tests.bot import botzip


def independent_digest(members: dict[str, bytes]) -> str:
    """The digest written out longhand as one concatenated byte string."""
    blob = b""
    for name in sorted(members):
        raw = name.encode("utf-8")
        # Characters, not bytes: the stock bot's generate_version uses len(name).
        blob += str(len(name)).encode() + raw + str(len(members[name])).encode() + members[name]
    return hashlib.sha256(blob).hexdigest()


def test_digest_of_one_member_is_length_prefixed() -> None:
    """A single member hashes as len(name) name len(content) content."""
    assert archive.content_digest({"a": b"xy"}) == hashlib.sha256(b"1a2xy").hexdigest()


def test_digest_matches_independent_computation() -> None:
    """Sorted members with non-ASCII names and binary contents agree with the longhand."""
    members = {
        "z/last.py": b"print(1)\n",
        "bot/__init__.py": b"",
        "config/\u00e9t\u00e9.json": b"\x00\xff" * 100,
        "__main__.py": b"import bot\n",
    }
    assert archive.content_digest(members) == independent_digest(members)


def test_digest_ignores_order_and_compression(tmp_path: pathlib.Path) -> None:
    """Two zips of the same files, written differently, have the same version."""
    files = botzip.members("http://127.0.0.1:1")
    first = tmp_path / "a.zip"
    botzip.write(first, files)
    second = tmp_path / "b.zip"
    with zipfile.ZipFile(second, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(files, reverse=True):
            zf.writestr(name, files[name])
    assert archive.digest_of_zip(str(first)) == archive.digest_of_zip(str(second))
    assert archive.digest_of_zip(str(first)) == independent_digest(files)


def test_digest_changes_with_the_server_url() -> None:
    """config.json is a member, so each server URL gets its own version (A1)."""
    one = archive.content_digest(botzip.members("http://127.0.0.1:1"))
    two = archive.content_digest(botzip.members("http://127.0.0.1:2"))
    assert one != two


def test_source_members_mirror_the_archive_layout() -> None:
    """Every bot/*.py is packed under bot/, and __main__.py is also at the root."""
    members = archive.source_members(str(botzip.BOT_DIR))
    assert members["__main__.py"] == members["bot/__main__.py"]
    assert "bot/main.py" in members
    assert "bot/archive.py" in members
    assert all(name.endswith(".py") for name in members)
    assert not any("__pycache__" in name for name in members)
