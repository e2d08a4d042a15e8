"""Where the running bot code lives, and how to start it again.

The bot runs either from its archive (`python3 swarming_bot.zip start_bot`:
the server URL comes from the archive's `config/config.json`, the version is
the archive's content digest) or from a source tree (`python -m bot`, for
development and tests: the server URL comes from `--server` or
`$DROVER_SERVER`, the version is the digest of the package's files). Every
other module asks this one instead of guessing from `__file__`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import zipfile
from typing import List, Mapping, Optional, Tuple

from bot import archive

CONFIG_JSON = "config/config.json"
BASE_HOOKS = "config/bot_config.py"
# The name the bot is deployed under and its two update slots (PROTOCOL.md 2.3).
LKGBC_NAME = "swarming_bot.zip"
SLOT_NAMES = ("swarming_bot.1.zip", "swarming_bot.2.zip")
SERVER_ENV = "DROVER_SERVER"
HOOKS_ENV = "DROVER_BOT_CONFIG"

# Started with `python -c` in source mode so the bot package is importable
# without adding PYTHONPATH to the environment, which tasks would inherit.
_SOURCE_STUB = "import sys; sys.path.insert(0, {root!r}); from bot import cli; sys.exit(cli.main())"


class ConfigError(Exception):
    """The bot cannot tell which server to talk to or which code it runs."""


@dataclasses.dataclass(frozen=True)
class Runtime:
    """The code the bot runs and the server it belongs to."""

    zip_path: Optional[str]
    source_root: Optional[str]
    base_dir: str
    server: str
    server_version: str
    version: str
    base_hooks: Optional[Tuple[str, str]]  # (file name, source) of the base hooks script

    def command(self, subcommand: str, *args: str) -> List[str]:
        """The command line that runs `subcommand` with this same code."""
        if self.zip_path is not None:
            return [sys.executable, self.zip_path, subcommand, *args]
        stub = _SOURCE_STUB.format(root=self.source_root)
        return [sys.executable, "-c", stub, subcommand, "--server", self.server, *args]

    def command_for_zip(self, zip_path: str, subcommand: str, *args: str) -> List[str]:
        """The command line that runs `subcommand` from another archive."""
        return [sys.executable, zip_path, subcommand, *args]


def running_zip() -> Optional[str]:
    """The archive this package was imported from, or None in a source tree."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    container = os.path.dirname(package_dir)
    if os.path.isfile(container) and zipfile.is_zipfile(container):
        return container
    return None


def load(
    server_override: Optional[str] = None, environ: Optional[Mapping[str, str]] = None
) -> Runtime:
    """Finds out where the code runs from; raises ConfigError when it cannot."""
    env = os.environ if environ is None else environ
    zip_path = running_zip()
    if zip_path is not None:
        return _from_zip(zip_path)
    package_dir = os.path.dirname(os.path.abspath(__file__))
    server = server_override or env.get(SERVER_ENV, "")
    if not server:
        raise ConfigError(f"running from a source tree: pass --server URL or set ${SERVER_ENV}")
    return Runtime(
        zip_path=None,
        source_root=os.path.dirname(package_dir),
        base_dir=os.getcwd(),
        server=server.rstrip("/"),
        server_version="",
        version=archive.content_digest(archive.source_members(package_dir)),
        base_hooks=_source_hooks(os.path.dirname(package_dir), env),
    )


def _from_zip(zip_path: str) -> Runtime:
    members = archive.read_members(zip_path)
    try:
        config = json.loads(members[CONFIG_JSON].decode("utf-8"))
        server = str(config["server"])
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(f"{zip_path}: unreadable {CONFIG_JSON}: {e!r}") from e
    hooks_source = members.get(BASE_HOOKS)
    return Runtime(
        zip_path=zip_path,
        source_root=None,
        base_dir=os.path.dirname(zip_path),
        server=server.rstrip("/"),
        server_version=str(config.get("server_version") or ""),
        version=archive.content_digest(members),
        base_hooks=(BASE_HOOKS, hooks_source.decode("utf-8", "replace"))
        if hooks_source is not None
        else None,
    )


def _source_hooks(root: str, env: Mapping[str, str]) -> Optional[Tuple[str, str]]:
    """The base hooks of a source checkout: `$DROVER_BOT_CONFIG`, else the quickstart's."""
    path = env.get(HOOKS_ENV) or os.path.join(root, "configs", "bot_config.py")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return path, f.read()
