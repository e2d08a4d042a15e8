"""The bot archive's content digest: the bot's version (PROTOCOL.md 2.3).

The digest covers the members' names and contents, not the zip's compressed
bytes, so two archives with the same files have the same version however they
were written. The server imports `content_digest` from here when it builds an
archive, and the bot computes it over its own zip, so both always agree.
Standard library only, Python 3.9+: the server and the bot share this file.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from typing import Dict, Mapping

# Where the server puts the bot package inside the archive, and the extra
# root entry point that makes `python3 swarming_bot.zip` work.
PACKAGE_PREFIX = "bot/"
ROOT_MAIN = "__main__.py"


def content_digest(members: Mapping[str, bytes]) -> str:
    """SHA-256 hex over every member sorted by name.

    For each member: the decimal length of its UTF-8 name, the name, the
    decimal length of its content, the content. Lengths make the encoding
    unambiguous (no name/content boundary can be forged by concatenation).
    """
    h = hashlib.sha256()
    for name in sorted(members):
        encoded = name.encode("utf-8")
        content = members[name]
        h.update(str(len(encoded)).encode("ascii"))
        h.update(encoded)
        h.update(str(len(content)).encode("ascii"))
        h.update(content)
    return h.hexdigest()


def read_members(path: str) -> Dict[str, bytes]:
    """Every file member of the zip at `path`, by name (directories skipped)."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}


def digest_of_zip(path: str) -> str:
    """The content digest of the zip at `path`."""
    return content_digest(read_members(path))


def source_members(package_dir: str) -> Dict[str, bytes]:
    """The members the server would pack from the bot package at `package_dir`.

    That is every `*.py` under it as `bot/<relative path>`, plus its
    `__main__.py` again at the root. Config members are not included: they
    depend on the server the archive is built for.
    """
    members: Dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(package_dir):
        # Sorted, and caches skipped, so the result does not depend on the
        # file system's order or on whether the code was ever run.
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for filename in sorted(filenames):
            if not filename.endswith(".py"):
                continue
            full = os.path.join(dirpath, filename)
            rel = os.path.relpath(full, package_dir).replace(os.sep, "/")
            with open(full, "rb") as f:
                members[PACKAGE_PREFIX + rel] = f.read()
    main = members.get(PACKAGE_PREFIX + ROOT_MAIN)
    if main is not None:
        members[ROOT_MAIN] = main
    return members
