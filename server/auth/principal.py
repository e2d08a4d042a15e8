"""Who calls the client API: a Principal, its roles, and the identities pools.cfg names.

Every client API call is made by exactly one Principal (DESIGN.md 8): a user
holding an API token ("user:alice"), an anonymous caller ("anonymous", with
the role settings.cfg gives it), or whatever another kind of bearer token
stands for, such as a task's service account ("service_account:x@y", acting
for one task). Roles are ordered: admin implies scheduler implies viewer.
"""

from __future__ import annotations

import dataclasses
import re

VIEWER = "viewer"
SCHEDULER = "scheduler"
ADMIN = "admin"
# Lowest first: each role implies the ones before it.
ROLE_ORDER = (VIEWER, SCHEDULER, ADMIN)
ROLES = frozenset(ROLE_ORDER)

ANONYMOUS = "anonymous"
USER_PREFIX = "user:"
SERVICE_ACCOUNT_PREFIX = "service_account:"
ROLE_PREFIX = "role:"
# What a user name (an API token's name) may look like: it ends up in
# identities, ACL entries and logs, so no whitespace and no ':'.
USER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_EMAIL_RE = re.compile(r"[^@\s:]+@[^@\s:]+")


def implied(role: str) -> frozenset[str]:
    """`role` and every role below it; nothing for "" (no role)."""
    if not role:
        return frozenset()
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLE_ORDER)}")
    return frozenset(ROLE_ORDER[: ROLE_ORDER.index(role) + 1])


@dataclasses.dataclass(frozen=True)
class Principal:
    """The caller of one client API call, as a verifier established it.

    `roles` holds the implied roles too (see `implied`). `task_id` is set
    when the token was minted for a task (issue 6's access tokens): such a
    caller may report results for that task whatever its roles.
    """

    identity: str
    roles: frozenset[str] = frozenset()
    task_id: str = ""

    @classmethod
    def user(cls, name: str, role: str) -> Principal:
        """The principal of an API token: "user:<name>" with `role` and those below it."""
        return cls(identity=USER_PREFIX + name, roles=implied(role))

    @classmethod
    def anonymous(cls, role: str) -> Principal:
        """A caller without a token, holding the role settings.cfg gives anonymous callers."""
        return cls(identity=ANONYMOUS, roles=implied(role))

    @property
    def is_anonymous(self) -> bool:
        """True for a caller that sent no token."""
        return self.identity == ANONYMOUS

    def has_role(self, role: str) -> bool:
        """True when the principal holds `role` (directly or through a higher one)."""
        return role in self.roles

    @property
    def top_role(self) -> str:
        """The highest role held, or "" for none."""
        return next((r for r in reversed(ROLE_ORDER) if r in self.roles), "")


def acl_entry_error(entry: str) -> str:
    """Why `entry` is not a valid pools.cfg `schedulers` entry, or "".

    Valid: a user name ("alice"), "user:<name>", "role:<role>" or
    "service_account:<email>".
    """
    kind, sep, value = entry.partition(":")
    if not sep:
        return "" if USER_NAME_RE.fullmatch(entry) else f"{entry!r} is not a valid user name"
    if kind + ":" == USER_PREFIX:
        return "" if USER_NAME_RE.fullmatch(value) else f"{value!r} is not a valid user name"
    if kind + ":" == ROLE_PREFIX:
        if value in ROLES:
            return ""
        return f"unknown role {value!r}; known: {', '.join(ROLE_ORDER)}"
    if kind + ":" == SERVICE_ACCOUNT_PREFIX:
        return "" if _EMAIL_RE.fullmatch(value) else f"{value!r} is not a service account email"
    return (
        f"unknown kind {kind!r}; an entry is a user name, user:<name>, role:<role> "
        "or service_account:<email>"
    )


def matches(principal: Principal, entry: str) -> bool:
    """True when a valid ACL entry names the principal (by identity or by role)."""
    if entry.startswith(ROLE_PREFIX):
        return principal.has_role(entry[len(ROLE_PREFIX) :])
    if ":" not in entry:
        entry = USER_PREFIX + entry
    return principal.identity == entry
