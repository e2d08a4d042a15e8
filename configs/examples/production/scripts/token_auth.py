"""Hooks script for bots.cfg groups that authenticate by bearer token.

Sent to the bots at handshake (bots.cfg `bot_config_script`); its hooks win
over the base bot_config.py. The token comes from $DROVER_BOT_TOKEN_FILE
(default /etc/drover/bot_token) and is re-read every hour, so rotating it on
disk needs no restart. Standard library only: bots run it on Python 3.9+.
"""

from __future__ import annotations

import os
import time
from typing import Any

TOKEN_FILE = os.environ.get("DROVER_BOT_TOKEN_FILE", "/etc/drover/bot_token")
# The bot refreshes headers shortly before this expiry.
REREAD_SECS = 3600


def get_authentication_headers(bot: Any) -> tuple[dict[str, str] | None, float | None]:
    """Returns the bearer header for the server's bot_token_sha256 check."""
    with open(TOKEN_FILE, encoding="utf-8") as f:
        token = f.read().strip()
    return {"Authorization": f"Bearer {token}"}, time.time() + REREAD_SECS
