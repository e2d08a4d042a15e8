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
from typing import IO, Dict, Mapping, Union

# Where the server puts the bot package inside the archive, and the extra
# root entry point that makes `python3 swarming_bot.zip` work.
PACKAGE_PREFIX = "bot/"
ROOT_MAIN = "__main__.py"


def content_digest(members: Mapping[str, bytes]) -> str:
    """SHA-256 hex over every member sorted by name.

    For each member: the decimal length of its name (in characters), the
    name (UTF-8), the decimal length of its content, the content. This is
    exactly the stock bot's `zip_package.generate_version`, so a stock
    archive served by Drover gets the digest the stock bot computes for
    itself (PROTOCOL.md 0.2.2 A1). The lengths make the encoding unambiguous.
    """
    h = hashlib.sha256()
    for name in sorted(members):
        content = members[name]
        h.update(str(len(name)).encode("ascii"))
        h.update(name.encode("utf-8"))
        h.update(str(len(content)).encode("ascii"))
        h.update(content)
    return h.hexdigest()


def read_members(source: Union[str, IO[bytes]]) -> Dict[str, bytes]:
    """Every member of a zip (a path or a binary file), by name.

    Directory entries are members too, with empty content, as the stock
    bot counts them.
    """
    with zipfile.ZipFile(source) as zf:
        return {i.filename: b"" if i.is_dir() else zf.read(i) for i in zf.infolist()}


def digest_of_zip(source: Union[str, IO[bytes]]) -> str:
    """The content digest of a zip (a path or a binary file)."""
    return content_digest(read_members(source))


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
