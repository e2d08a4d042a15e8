"""The action buttons' one path: a posted form, its CSRF check, the guarded API call.

Each button names an action of a table (server/web/tasks.py, bots.py) that
maps it to a client API method and the request to send. The method is the
guarded servicer's (server/api/guard.py), so the button is refused exactly
when the API call would be, with the same message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from google.protobuf import message

from server.api.transcoder import CallContext
from server.errors import NotFound
from server.web import gate

# An action's client API method and the request it sends, from the target's
# ID and the message the form carries (empty when the form has none).
Actions = Mapping[str, tuple[str, Callable[[str, str], message.Message]]]
# Longest message kept from a form (FleetService keeps 1024 too).
MAX_MESSAGE = 1024


async def press(
    request: web.Request, servicer: Any, actions: Actions, target: str
) -> tuple[str, str, Any]:
    """Runs the action the request posts on `target`; returns (action, method, reply).

    Raises CsrfMismatch for a form without the browser's CSRF token, NotFound
    for an action not in `actions`, and whatever the API call raises.
    """
    form = await request.post()
    gate.check_csrf(request, form)
    action = request.match_info["action"]
    if action not in actions:
        raise NotFound(f"no such action: {action!r}")
    method, build = actions[action]
    text = form.get("message", "")
    note = text.strip()[:MAX_MESSAGE] if isinstance(text, str) else ""
    ctx = CallContext(peer=request.remote or "", headers=gate.credentials(request))
    reply = await getattr(servicer, method)(build(target, note), ctx)
    return action, method, reply
