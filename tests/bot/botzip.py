"""Builds bot archives the way the server does (issue 3 layout), for tests.

Every `bot/**/*.py` as `bot/<path>`, `bot/__main__.py` again as the root
`__main__.py`, plus `config/config.json` and `config/bot_config.py`. Members
are written sorted with a fixed timestamp, so equal inputs give equal bytes.
"""

from __future__ import annotations

import json
import pathlib
import zipfile
from collections.abc import Mapping

from bot import archive

BOT_DIR = pathlib.Path(__file__).resolve().parents[2] / "bot"
FIXED_TIME = (2020, 1, 1, 0, 0, 0)

# The base hooks baked into test archives: they mark the state, send a
# bearer token, and record what the task hooks were given.
BASE_HOOKS = """
import json, os

def get_state(bot):
    state = dict(bot.state)
    state["base_hooks"] = True
    return state

def get_authentication_headers(bot):
    return {"Authorization": "Bearer test-token"}, None

def on_before_task(bot, bot_file, runner_cmd, runner_env):
    runner_env["FROM_HOOK"] = bot.task["task_id"]
    runner_env["BOT_FILE_EXISTS"] = str(os.path.exists(bot_file))

def on_after_task(bot, failure, internal_failure, task_dimensions, summary):
    with open(os.path.join(bot.base_dir, "after_task.json"), "w") as f:
        json.dump({"failure": failure, "internal_failure": internal_failure,
                   "exit_code": summary.get("exit_code")}, f)
"""


def members(
    server: str,
    *,
    server_version: str = "test",
    bot_config: str = BASE_HOOKS,
    replace: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """The archive's members for `server` (`replace` overrides any of them)."""
    result = archive.source_members(str(BOT_DIR))
    result["config/config.json"] = json.dumps(
        {"server": server.rstrip("/"), "server_version": server_version}, sort_keys=True
    ).encode()
    result["config/bot_config.py"] = bot_config.encode()
    result.update(replace or {})
    return result


def write(path: pathlib.Path, files: Mapping[str, bytes]) -> str:
    """Writes a deterministic zip of `files` at `path`; returns its content digest."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return archive.content_digest(files)


def build(
    path: pathlib.Path,
    server: str,
    *,
    server_version: str = "test",
    bot_config: str = BASE_HOOKS,
    replace: Mapping[str, bytes] | None = None,
) -> str:
    """Writes a bot archive for `server` at `path`; returns its version."""
    files = members(server, server_version=server_version, bot_config=bot_config, replace=replace)
    return write(path, files)
