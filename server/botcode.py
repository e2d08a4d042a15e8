"""The bot archives the server hands out, and which one each bot should run.

The archive's content digest is the bot's version (PROTOCOL.md 2.3). On every
poll a bot whose version differs from `BotCode.for_bot(bot_id).digest` is told
to update. It then downloads `bot_code/<digest>`, which must serve exactly
those bytes (0.2.2 A2), so the server only advertises archives it holds.

The stable archive is built from the `bot/` package plus `config/config.json`
(the server URL) and `config/bot_config.py` (the base hooks script),
deterministically, so the same inputs always give the same version. settings.cfg
`bot_deployment` can name prebuilt archives instead, e.g. a pinned stock
Swarming bot, served as is. An optional canary archive goes to a fixed share of
the bots, picked by bot ID (DESIGN.md 9).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

from bot import archive as bot_archive
from bot.archive import content_digest as content_digest  # re-exported for callers
from server import __version__
from server.config.model import ConfigSnapshot

log = logging.getLogger("drover.botcode")

# Where the bot package and its config go inside the archive. The root
# `__main__.py` makes `python3 swarming_bot.zip <command>` run the bot.
PACKAGE_PREFIX = "bot/"
ROOT_MAIN = "__main__.py"
CONFIG_JSON = "config/config.json"
BASE_HOOKS = "config/bot_config.py"
# The earliest time a zip entry can hold: any fixed value keeps builds
# byte-identical, and this one reads as "no real timestamp".
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# A regular file, rw-r--r--, recorded as made on Unix whatever builds it.
_FILE_ATTR = 0o100644 << 16
_UNIX = 3
_SKIPPED_DIRS = frozenset({"__pycache__", "tests"})
# Route parameters: new bots send SHA-256 (64 hex), very old ones SHA-1 (40).
_DIGEST_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
DEFAULT_SERVER_VERSION = f"drover-{__version__}"

# A prebuilt archive file as last read: (path, size, mtime in ns).
_FileKey = tuple[str, int, int]


def read_members(data: bytes) -> dict[str, bytes]:
    """Every member of the zip `data`, by name (directories with empty content)."""
    return bot_archive.read_members(io.BytesIO(data))


def digest_of_zip(data: bytes) -> str:
    """The content digest of the zip `data`; raises zipfile.BadZipFile if it is not one."""
    return content_digest(read_members(data))


def archive_members(
    bot_dir: Path, *, server_url: str, base_hooks_script: str, server_version: str
) -> dict[str, bytes]:
    """What `build_archive` packs: the bot's `*.py` files, the root main and the config.

    Raises ValueError for a server URL with a trailing slash (the bot would
    build every URL with a double slash) and for a bot dir without
    `__main__.py`.
    """
    if not server_url or server_url.endswith("/"):
        raise ValueError(f"server URL {server_url!r} must be non-empty without a trailing slash")
    members: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(bot_dir):
        # Pruned in place so os.walk does not descend into caches or tests.
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
        for filename in filenames:
            if filename.endswith(".py"):
                path = Path(dirpath, filename)
                members[PACKAGE_PREFIX + path.relative_to(bot_dir).as_posix()] = path.read_bytes()
    main = members.get(PACKAGE_PREFIX + ROOT_MAIN)
    if main is None:
        raise ValueError(f"{bot_dir} has no {ROOT_MAIN}: the archive would not run")
    members[ROOT_MAIN] = main
    config = {"server": server_url, "server_version": server_version}
    members[CONFIG_JSON] = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    members[BASE_HOOKS] = base_hooks_script.encode("utf-8")
    return members


def zip_members(members: Mapping[str, bytes]) -> bytes:
    """A zip of `members` whose bytes depend only on the members (and the zlib build)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(members):
            # An explicit ZipInfo: writestr with a bare name would stamp the
            # current time and the local umask into the archive.
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = _UNIX
            info.external_attr = _FILE_ATTR
            zf.writestr(info, members[name])
    return buf.getvalue()


def build_archive(
    bot_dir: Path, *, server_url: str, base_hooks_script: str, server_version: str
) -> bytes:
    """The deterministic bot archive for one server URL and base hooks script.

    Same inputs, byte-identical output. See `archive_members` for the content.
    """
    return zip_members(
        archive_members(
            bot_dir,
            server_url=server_url,
            base_hooks_script=base_hooks_script,
            server_version=server_version,
        )
    )


def canary_slot(bot_id: str) -> int:
    """The bot's fixed place in 0..99 for canary selection (PROTOCOL.md 2.3).

    The first two bytes of SHA-256("bot-channel:" + bot_id), little-endian,
    scaled to 0..99. A bot is a canary when this is below canary_percent.
    """
    head = hashlib.sha256(b"bot-channel:" + bot_id.encode("utf-8")).digest()[:2]
    return int.from_bytes(head, "little") * 100 // 65536


@dataclasses.dataclass(frozen=True)
class BotArchive:
    """One archive the server serves: its version, its bytes, where it came from."""

    digest: str
    data: bytes = dataclasses.field(repr=False)
    source: str


def load_prebuilt(path: Path) -> BotArchive:
    """A prebuilt archive, served as is; its version is its content digest.

    Raises OSError or zipfile.BadZipFile when the file cannot be used.
    """
    data = path.read_bytes()
    return BotArchive(digest_of_zip(data), data, f"prebuilt {path}")


class BotCode:
    """The stable and canary archives of the current config, and who gets which.

    Built at startup from a config snapshot; `update` follows config reloads,
    rebuilding only what changed.
    """

    def __init__(
        self,
        snapshot: ConfigSnapshot,
        *,
        server_url: str,
        bot_dir: Path,
        server_version: str = DEFAULT_SERVER_VERSION,
    ) -> None:
        """Raises ValueError, OSError or zipfile.BadZipFile: a server must not start
        without an archive to serve."""
        self._server_url = server_url
        self._bot_dir = bot_dir
        self._server_version = server_version
        self._built: BotArchive | None = None
        self._prebuilt: dict[_FileKey, BotArchive] = {}
        self.stable, self.canary, self._canary_percent = self._resolve(snapshot)

    def update(self, snapshot: ConfigSnapshot) -> None:
        """Follows a new config. On failure the current archives keep serving.

        Never raises: it runs as a config subscriber, and a bot that was told
        to update must still be able to download what it was promised.
        """
        try:
            self.stable, self.canary, self._canary_percent = self._resolve(snapshot)
        except (OSError, ValueError, zipfile.BadZipFile):
            log.exception("bot archive not updated for config %s", snapshot.revision)

    def for_bot(self, bot_id: str) -> BotArchive:
        """The archive `bot_id` should run: canary for its share of bots, else stable."""
        if self.canary is not None and canary_slot(bot_id) < self._canary_percent:
            return self.canary
        return self.stable

    def get(self, digest: str) -> BotArchive | None:
        """The current archive with this digest (40 or 64 hex), or None."""
        digest = digest.lower()
        if not _DIGEST_RE.fullmatch(digest):
            return None
        for archive in (self.stable, self.canary):
            if archive is not None and archive.digest == digest:
                return archive
        return None

    def _resolve(self, snapshot: ConfigSnapshot) -> tuple[BotArchive, BotArchive | None, int]:
        settings = snapshot.settings
        # The prebuilt files in use; archives no longer named are dropped.
        prebuilt: dict[_FileKey, BotArchive] = {}
        if settings.stable_archive_file:
            stable = self._load(Path(settings.stable_archive_file), prebuilt)
        else:
            stable = self._build(snapshot.base_hooks_script)
        canary = None
        if settings.canary_archive_file:
            canary = self._load(Path(settings.canary_archive_file), prebuilt)
        self._prebuilt = prebuilt
        return stable, canary, settings.canary_percent

    def _build(self, base_hooks_script: str) -> BotArchive:
        members = archive_members(
            self._bot_dir,
            server_url=self._server_url,
            base_hooks_script=base_hooks_script,
            server_version=self._server_version,
        )
        # Reading and hashing the files is cheap; compressing them is the
        # part worth skipping when nothing changed.
        digest = content_digest(members)
        if self._built is None or self._built.digest != digest:
            source = f"built from {self._bot_dir} for {self._server_url}"
            self._built = BotArchive(digest, zip_members(members), source)
            log.info("bot archive %s %s", digest, source)
        return self._built

    def _load(self, path: Path, prebuilt: dict[_FileKey, BotArchive]) -> BotArchive:
        st = path.stat()
        # A replaced file changes size or mtime; an unchanged one is not reread.
        key = (str(path), st.st_size, st.st_mtime_ns)
        archive = self._prebuilt.get(key) or prebuilt.get(key)
        if archive is None:
            archive = load_prebuilt(path)
            log.info("bot archive %s %s", archive.digest, archive.source)
        prebuilt[key] = archive
        return archive
