"""Base hooks of the bundled bot, baked into the bot archive as config/bot_config.py.

The bot calls these at fixed points (PROTOCOL.md 3.5); each one here gives the
default answer, so this file changes nothing. Edit it to change every bot, or
put a per-group script in scripts/ and name it in bots.cfg `bot_config_script`
(its getters win over these; both scripts' on_* hooks run). The bot runs on
Python 3.9+ with the standard library only, and so must this file.
"""

from __future__ import annotations

from typing import Any


def get_dimensions(bot: Any) -> dict[str, list[str]]:
    """Returns the bot's dimensions; `bot.dimensions` holds the ones it computed."""
    return bot.dimensions


def get_state(bot: Any) -> dict[str, Any]:
    """Returns the bot's state; `bot.state` holds the one it computed."""
    return bot.state


def get_authentication_headers(bot: Any) -> tuple[dict[str, str] | None, float | None]:
    """Returns (headers, expiry as unix time); (None, None) sends no credentials.

    The quickstart bots.cfg admits bots by IP address, so none are needed.
    """
    return None, None


def on_before_task(
    bot: Any, bot_file: Any = None, runner_cmd: Any = None, runner_env: Any = None
) -> None:
    """Called before a task starts; may edit runner_cmd and runner_env in place.

    The extra arguments are optional so that the hook also fits a bot that
    passes fewer of them.
    """


def on_after_task(
    bot: Any,
    failure: bool,
    internal_failure: bool,
    dimensions: dict[str, Any],
    summary: dict[str, Any],
) -> None:
    """Called after a task ends, whatever its outcome."""
