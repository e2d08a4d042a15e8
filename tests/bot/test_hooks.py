"""Loading hooks scripts and calling them without letting them break the bot."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot import hooks

BASE = """
calls = []
def get_dimensions(bot):
    d = dict(bot.dimensions); d["from"] = ["base"]; return d
def get_state(bot):
    s = dict(bot.state); s["base"] = True; return s
def on_after_task(bot, *args):
    calls.append("base")
"""

INJECTED = """
import bot_config
def get_dimensions(bot):
    d = dict(bot.dimensions); d["from"] = ["injected"]; return d
def on_after_task(bot, *args):
    bot_config.calls.append("injected")
"""


@pytest.fixture
def bot() -> hooks.BotInfo:
    """What the hooks get to see."""
    return hooks.BotInfo(id="b1", base_dir="/tmp", server="http://x", version="v")


def test_injected_getters_override_the_base_ones(bot: hooks.BotInfo) -> None:
    """get_dimensions comes from the injected script; get_state still from the base."""
    h = hooks.Hooks(("config/bot_config.py", BASE))
    h.inject("extra.py", INJECTED)
    found, error = h.dimensions(bot, {"id": ["b1"]})
    assert (found, error) == ({"id": ["b1"], "from": ["injected"]}, "")
    state, error = h.state(bot, {"running_time": 1})
    assert state == {"running_time": 1, "base": True}
    assert not error
    assert h.quarantine is None


def test_task_hooks_run_from_both_scripts_base_first(bot: hooks.BotInfo) -> None:
    """on_after_task is called in the base script, then in the injected one."""
    h = hooks.Hooks(("config/bot_config.py", BASE))
    h.inject("extra.py", INJECTED)
    assert h.call_both("on_after_task", bot, False, False, {}, {}) == []
    import bot_config  # type: ignore[import-not-found]  # the module the base script became

    assert bot_config.calls == ["base", "injected"]


def test_a_broken_injected_script_quarantines(bot: hooks.BotInfo) -> None:
    """A syntax error is a quarantine message, and the base hooks keep working."""
    h = hooks.Hooks(("config/bot_config.py", BASE))
    h.inject("broken.py", "def get_state(:\n")
    assert h.quarantine is not None
    assert "invalid injected bot_config.py" in h.quarantine
    assert h.dimensions(bot, {"id": ["b1"]})[0]["from"] == ["base"]


def test_raising_getters_fall_back_to_defaults_with_an_error(bot: hooks.BotInfo) -> None:
    """A getter that raises or returns junk yields the defaults and a reason."""
    h = hooks.Hooks(
        ("s.py", "def get_dimensions(bot): raise OSError('no gpu')\ndef get_state(bot): return 3\n")
    )
    found, error = h.dimensions(bot, {"id": ["b1"]})
    assert found == {"id": ["b1"]}
    assert "get_dimensions failed" in error
    assert "no gpu" in error
    state, error = h.state(bot, {"running_time": 1})
    assert state == {"running_time": 1}
    assert "not a dict" in error


def test_failing_task_hooks_become_error_messages(bot: hooks.BotInfo) -> None:
    """An on_before_task that raises is returned as a message, not raised."""
    h = hooks.Hooks(("s.py", "def on_before_task(bot, bot_file, cmd, env): 1/0\n"))
    errors = h.call_both("on_before_task", bot, "bot_file", [], {})
    assert len(errors) == 1
    assert "ZeroDivisionError" in errors[0]


def test_auth_headers_are_cached_until_near_expiry(bot: hooks.BotInfo) -> None:
    """The hook is called again only within 9.5 minutes of the expiry it gave."""
    source = (
        "n = [0]\n"
        "def get_authentication_headers(bot):\n"
        "    n[0] += 1\n"
        "    return {'T': str(n[0])}, EXPIRY\n"
    )
    far = hooks.Hooks(("s.py", source.replace("EXPIRY", str(time.time() + 3600))))
    assert far.auth_headers(bot) == {"T": "1"}
    assert far.auth_headers(bot) == {"T": "1"}
    near = hooks.Hooks(("s.py", source.replace("EXPIRY", str(time.time() + 60))))
    assert near.auth_headers(bot) == {"T": "1"}
    assert near.auth_headers(bot) == {"T": "2"}


def test_no_credentials_hook_means_no_headers(bot: hooks.BotInfo) -> None:
    """(None, None), like a missing hook, sends no credentials."""
    h: Any = hooks.Hooks(("s.py", "def get_authentication_headers(bot): return None, None\n"))
    assert h.auth_headers(bot) == {}
    assert hooks.Hooks(None).auth_headers(bot) == {}
