"""Which service accounts tasks may run as: pools.cfg `allowed_service_account`.

A task names one account for all its slices (`service_account`): "none"
(the default: no token), "bot" (the bot's own credentials: Drover mints
nothing) or an email, which every pool its slices target must list. The
check runs when the task is created (a refusal stores nothing) and again
whenever a token is minted or used for it, so removing an account from a
pool takes effect at once, running tasks included.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.config.model import ConfigSnapshot
from server.errors import PermissionDenied

# Accounts that are not emails: nothing is minted for them.
NO_ACCOUNT = "none"
BOT_ACCOUNT = "bot"


class ServiceAccountNotAllowed(PermissionDenied):
    """The service account may not be used in this pool."""


def is_mintable(account: str) -> bool:
    """True for a real account (an email), False for "none", "bot" or nothing."""
    return account not in ("", NO_ACCOUNT, BOT_ACCOUNT)


def check_allowed(snapshot: ConfigSnapshot, account: str, pools: Iterable[str]) -> None:
    """Raises ServiceAccountNotAllowed unless every pool in `pools` allows `account`."""
    if not is_mintable(account):
        return
    for pool in dict.fromkeys(pools):
        entry = snapshot.pool(pool)
        if entry is None:
            raise ServiceAccountNotAllowed(
                f"service_account {account!r}: pool {pool!r} is not in pools.cfg,"
                " so it allows no service account"
            )
        if account not in entry.allowed_service_account:
            allowed = ", ".join(entry.allowed_service_account) or "none"
            raise ServiceAccountNotAllowed(
                f"service_account {account!r} is not in pools.cfg allowed_service_account"
                f" of pool {pool!r} (allowed: {allowed})"
            )
