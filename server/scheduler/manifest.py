"""The task manifest a bot gets in a `run` answer (PROTOCOL.md 1.6, 0.2.6).

Every key a stock bot requires is always present (M1); optional inputs we do
not support (CAS, CIPD) are null (M4).
"""

from __future__ import annotations

import base64
from typing import Any

from server.model import Bot, TaskRequest, TaskResult


def build(
    request: TaskRequest,
    result: TaskResult,
    bot: Bot,
    server_url: str,
    system_account: str = "none",
) -> dict[str, Any]:
    """Returns the manifest of the task's current run for `bot`.

    `service_accounts` names the task's account and the bot group's system
    account: a bot asks for tokens (`oauth_token`, `id_token`) only for an
    account named there (PROTOCOL.md 1.10).
    """
    props = request.slices[result.current_slice].properties
    requested: dict[str, list[str]] = {}
    for key, value in props.dimensions:
        requested.setdefault(key, []).append(value)
    account = request.service_account if request.service_account != "none" else "none"
    return {
        "bot_authenticated_as": bot.authenticated_as,
        "bot_dimensions": result.bot_dimensions,
        "bot_id": bot.bot_id,
        "caches": [{"hint": "-1", "name": c.name, "path": c.path} for c in props.caches],
        "cas_input_root": None,
        "cipd_input": None,
        "command": list(props.command),
        "containment": {"containment_type": 0},
        "dimensions": requested,
        "env": dict(props.env),
        "env_prefixes": {k: list(v) for k, v in props.env_prefixes.items()},
        "grace_period": props.grace_period_secs,
        "hard_timeout": props.execution_timeout_secs,
        "host": server_url,
        "io_timeout": props.io_timeout_secs,
        "outputs": list(props.outputs),
        "realm": None,
        "relative_cwd": props.relative_cwd,
        "resultdb": None,
        "secret_bytes": base64.b64encode(props.secret_bytes).decode()
        if props.secret_bytes
        else None,
        "service_accounts": {
            "system": {"service_account": system_account or "none"},
            "task": {"service_account": account},
        },
        "task_id": result.run_id,
    }
