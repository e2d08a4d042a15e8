"""The loud warning for a server whose writes are open to callers without a token.

The quickstart config (configs/settings.cfg) lets anonymous callers
schedule, which is fine on loopback and dangerous anywhere else: anyone who
reaches the port can then run commands on every bot. The server checks at
start and on every config reload, and logs a banner when it listens beyond
loopback with such a config.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from server.auth.principal import SCHEDULER, implied

log = logging.getLogger("drover.auth")


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach; a host name counts only as
    "localhost", since any other name may resolve to a public address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(hosts: Iterable[str], anonymous_role: str) -> str:
    """The warning to log, or "" when no write is open beyond loopback."""
    exposed = sorted({h for h in hosts if not is_loopback(h)})
    if not exposed or SCHEDULER not in implied(anonymous_role):
        return ""
    bar = "!" * 78
    return "\n".join(
        [
            bar,
            f"!! settings.cfg gives callers without a token the {anonymous_role} role, and the",
            f"!! server listens on {', '.join(exposed)}: anyone who can reach it may run",
            '!! commands on every bot. Set anonymous_role to "viewer" or remove it, and',
            "!! create API tokens with `drover token create`, or listen on 127.0.0.1.",
            bar,
        ]
    )


def warn_if_exposed(hosts: Iterable[str], anonymous_role: str) -> bool:
    """Logs the warning if it applies; True when it did."""
    warning = exposure_warning(hosts, anonymous_role)
    if warning:
        log.warning("anonymous writes are open beyond loopback\n%s", warning)
    return bool(warning)
