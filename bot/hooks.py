"""The hooks scripts: the base one in the archive, and one injected at handshake.

`config/bot_config.py` (baked into the archive by the server) is the base
script; the handshake may carry another (`bot_config`, from bots.cfg) that
is loaded as a second module. Getters (`get_dimensions`, `get_state`,
`get_authentication_headers`) come from the injected script when it defines
them, else from the base one; `on_before_task` and `on_after_task` run from
both, base first (PROTOCOL.md 3.5). Every hook takes a `BotInfo` first.

A hooks script is someone else's code running inside the bot: a script that
does not load, or a getter that raises, quarantines the bot with a message
(the server then gives it no work) instead of crashing it, and an `on_*`
hook that raises is returned as an error message for a bot_error event.

Hook signatures:
    get_dimensions(bot) -> {str: [str]}      bot.dimensions holds the defaults
    get_state(bot) -> dict                   bot.state holds the defaults
    get_authentication_headers(bot) -> ({header: value} or None, expiry unix time or None)
    on_before_task(bot, bot_file, runner_cmd, runner_env) -> None
                                             may edit the task runner's command line and
                                             environment (the task's base environment) in
                                             place; bot.task is the task's manifest
    on_after_task(bot, failure, internal_failure, task_dimensions, summary) -> None
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
import types
from typing import Any, Callable, Dict, List, Optional, Tuple

from bot import dims

log = logging.getLogger("drover_bot.hooks")

# Refresh credentials this long before they expire, like the stock bot.
AUTH_REFRESH_MARGIN = 570.0


@dataclasses.dataclass
class BotInfo:
    """What hooks see of the bot. `dimensions`/`state` are its latest values."""

    id: str
    base_dir: str
    server: str
    version: str
    dimensions: dims.Dimensions = dataclasses.field(default_factory=dict)
    state: Dict[str, Any] = dataclasses.field(default_factory=dict)
    task: Optional[Dict[str, Any]] = None  # the manifest of the running task, if any


def load_module(name: str, filename: str, source: str) -> types.ModuleType:
    """Compiles and runs `source` as module `name`; raises whatever the script raises."""
    code = compile(source, filename, "exec")
    module = types.ModuleType(name)
    module.__file__ = filename
    # Registered before running, so the script's own dataclasses and
    # pickling can find their module.
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class Hooks:
    """The base and injected hooks scripts, and the quarantine they cause."""

    def __init__(self, base: Optional[Tuple[str, str]]) -> None:
        self._base: Optional[types.ModuleType] = None
        self._injected: Optional[types.ModuleType] = None
        self._base_error: Optional[str] = None
        self._injected_error: Optional[str] = None
        self._auth: Optional[Tuple[Dict[str, str], Optional[float]]] = None
        if base is not None:
            filename, source = base
            try:
                self._base = load_module("bot_config", filename, source)
            except BaseException as e:  # a SystemExit in a script is a broken script too
                self._base_error = f"invalid base bot_config.py ({filename}): {e!r}"
                log.error("%s", self._base_error)

    def inject(self, name: str, source: str) -> None:
        """Loads the script the handshake returned; a broken one quarantines the bot."""
        self._auth = None
        try:
            self._injected = load_module("injected_bot_config", name or "bot_config.py", source)
            self._injected_error = None
        except BaseException as e:
            self._injected = None
            self._injected_error = f"handshake returned invalid injected bot_config.py: {e!r}"
            log.error("%s", self._injected_error)

    @property
    def quarantine(self) -> Optional[str]:
        """Why the hooks make this bot unfit for work, if they do."""
        return self._base_error or self._injected_error

    def _getter(self, name: str) -> Optional[Callable[..., Any]]:
        for module in (self._injected, self._base):
            fn: object = getattr(module, name, None) if module is not None else None
            if callable(fn):
                return fn
        return None

    def dimensions(self, bot: BotInfo, defaults: dims.Dimensions) -> Tuple[dims.Dimensions, str]:
        """(dimensions, error): the hook's answer, or the defaults and why not."""
        fn = self._getter("get_dimensions")
        if fn is None:
            return defaults, ""
        bot.dimensions = {k: list(v) for k, v in defaults.items()}
        try:
            return dims.validate_dimensions(fn(bot)), ""
        except Exception as e:
            return defaults, f"get_dimensions failed: {e!r}"

    def state(self, bot: BotInfo, defaults: Dict[str, Any]) -> Tuple[Dict[str, Any], str]:
        """(state, error): the hook's answer, or the defaults and why not."""
        fn = self._getter("get_state")
        if fn is None:
            return defaults, ""
        bot.state = dict(defaults)
        try:
            value = fn(bot)
            if not isinstance(value, dict):
                raise TypeError(f"get_state returned {type(value).__name__}, not a dict")
            return value, ""
        except Exception as e:
            return defaults, f"get_state failed: {e!r}"

    def auth_headers(self, bot: BotInfo) -> Dict[str, str]:
        """Credentials for the next request, cached until shortly before they expire."""
        now = time.time()
        if self._auth is not None:
            headers, expiry = self._auth
            if expiry is None or now < expiry - AUTH_REFRESH_MARGIN:
                return headers
        fn = self._getter("get_authentication_headers")
        headers, expiry = {}, None
        if fn is not None:
            answer = fn(bot)
            raw, expiry = answer if isinstance(answer, tuple) else (answer, None)
            headers = {str(k): str(v) for k, v in (raw or {}).items()}
        # No hook, or a hook answering (None, None), means no credentials
        # for the rest of this process (the stock bot's rule).
        self._auth = (headers, float(expiry) if expiry else None)
        return headers

    def call_both(self, name: str, *args: Any) -> List[str]:
        """Runs hook `name` from the base then the injected script; returns error messages."""
        errors: List[str] = []
        for module in (self._base, self._injected):
            fn = getattr(module, name, None) if module is not None else None
            if not callable(fn):
                continue
            try:
                fn(*args)
            except Exception as e:
                errors.append(f"{name} hook failed: {e!r}")
        return errors
