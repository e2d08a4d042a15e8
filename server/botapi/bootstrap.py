"""Joining the fleet in one command: `/bootstrap` and the access check of `/bot_code`.

`GET /bootstrap?tok=<bootstrap token>` answers a Python script (standard
library, 3.9+) that downloads `/bot_code?tok=<token>` into a directory and
execs the bot from it, so on a new machine

    curl -fsS 'https://drover.example.com/bootstrap?tok=drb_...' | python3 - ~/drover-bot

is all it takes. A caller that bots.cfg admits by itself (an allowlisted
IP, a bot token) needs no token: the script it gets carries a fresh one.
`GET /bot_code` (PROTOCOL.md 1.3) admits a valid bootstrap token, or a
caller whose credentials pass its bot group's rules (IP allowlist or bot
token); anyone else gets 403. Known archives stay public by digest, as in
Swarming: the bots.cfg credentials at handshake are what keep strangers out.
"""

from __future__ import annotations

import logging

from server.auth.bootstrap_tokens import BadBootstrapToken, BootstrapTokens
from server.botapi.context import BotApiContext
from server.botapi.messages import BotCredentials
from server.errors import PermissionDenied

log = logging.getLogger("drover.botapi")

# A token minted for a caller admitted by its address lasts long enough to
# download the code once; nothing else can use it.
ON_THE_FLY_SECS = 600

SCRIPT = '''#!/usr/bin/env python3
"""Drover bot bootstrap: download the bot code from {server} and start the bot.

Usage: python3 - [DIR] < this script  (DIR: the bot's own directory, default .)
Set SWARMING_BOT_ID to choose the bot ID (default: the short host name).
"""
import os
import sys
import urllib.request

SERVER = {server!r}
TOKEN = {token!r}


def main():
    target = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    os.makedirs(target, exist_ok=True)
    path = os.path.join(target, "swarming_bot.zip")
    url = SERVER + "/bot_code?tok=" + TOKEN
    if os.environ.get("SWARMING_BOT_ID"):
        url += "&bot_id=" + urllib.request.quote(os.environ["SWARMING_BOT_ID"])
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    print("drover bootstrap: %d bytes of bot code in %s, starting the bot" % (len(data), path))
    sys.stdout.flush()
    os.chdir(target)
    os.execv(sys.executable, [sys.executable, path, "start_bot"])


main()
'''


class BootstrapService:
    """Decides who may download bot code, and writes the bootstrap script."""

    def __init__(self, ctx: BotApiContext, tokens: BootstrapTokens) -> None:
        self._ctx = ctx
        self._tokens = tokens

    async def admit_bot_code(self, bot_id: str, creds: BotCredentials, token: str) -> str:
        """The digest of the archive `bot_id` should run, if the caller may have it.

        Raises BadBootstrapToken for a bad token, or the bot auth errors for
        a caller without one whose credentials its bot group refuses.
        """
        await self._admit(bot_id, creds, token)
        return self._ctx.botcode.for_bot(bot_id).digest

    async def script(self, creds: BotCredentials, token: str) -> str:
        """The bootstrap script, carrying `token` or, for an admitted caller, a fresh one."""
        await self._admit("", creds, token)
        if not token:
            token, _ = await self._tokens.mint(ON_THE_FLY_SECS)
        return SCRIPT.format(server=self._ctx.server_url, token=token)

    async def _admit(self, bot_id: str, creds: BotCredentials, token: str) -> None:
        if token:
            await self._tokens.check(token)
            return
        try:
            self._ctx.admit(bot_id or "unknown-bot", creds)
        except PermissionDenied as e:
            raise BadBootstrapToken(
                f"no bootstrap token (?tok=), and bots.cfg does not admit the caller: {e.detail}"
            ) from e
