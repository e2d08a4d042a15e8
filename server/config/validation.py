"""Validation of a config set: every rule, every problem, each with file, line and field.

The loader (`server.config.loader`) reads and parses the files into a
`ConfigSet`, then calls `validate`; `LiveConfig` refuses a set with problems
and keeps serving the previous one; `drover config validate` prints them.
Rules run on the whole set so one edit shows all of its mistakes at once.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import pathlib
import re
import urllib.parse
import warnings
from collections.abc import Iterable, Mapping, Sequence

from protos.config import bots_pb2, pools_pb2, settings_pb2
from server.auth.principal import ROLE_ORDER, acl_entry_error
from server.config.model import Settings
from server.dimensions import is_valid_key, value_error
from server.errors import DroverError

TOKEN_SHA256_RE = re.compile(r"[0-9a-f]{64}")
DIGITS_RE = re.compile(r"[0-9]+")
# One brace group per bot ID expression; a typo like "vm{1..100000}" must not
# make the server allocate millions of IDs, so expansions are bounded.
MAX_EXPANSION = 10_000
# settings.cfg numbers: (smallest, largest) allowed; zero always means "the default".
SETTINGS_RANGES: Mapping[str, tuple[int, int]] = {
    "reusable_task_age_secs": (1, 30 * 24 * 3600),
    "bot_death_timeout_secs": (30, 86400),
    "max_bot_sleep_time": (1, 3600),
    "long_poll_secs": (0, 45),
    "reservation_timeout_secs": (30, 3600),
    "session_lifetime_secs": (60, 86400),
    "bot_ping_tolerance_secs": (60, 3600),
    "poll_replay_secs": (60, 86400),
}


class ConfigError(DroverError):
    """Config error."""


class ConfigInvalid(ConfigError):
    """The config set is invalid."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(str(p) for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s)\n{lines}")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One reason a config set is refused; `line` is 1-based, 0 when unknown."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclasses.dataclass(frozen=True)
class ConfigSet:
    """A parsed config directory, the input of `validate`.

    A proto is None when its file could not be parsed (its syntax problem is
    already reported), so semantic rules skip it rather than pile up noise.
    `lines` maps file name -> field path ("bot_group[1].bot_id[0]") -> line.
    """

    config_dir: pathlib.Path
    bots: bots_pb2.BotsCfg | None
    pools: pools_pb2.PoolsCfg | None
    settings: settings_pb2.SettingsCfg | None
    lines: Mapping[str, Mapping[str, int]]
    # File name under scripts/ -> source.
    scripts: Mapping[str, str]
    # bot_config.py, or None when the file does not exist.
    base_hooks_script: str | None = None


def expand_bot_id(expr: str) -> list[str]:
    """Expands one brace group: "vm{1..3}-m1" -> vm1-m1..vm3-m1, "vm{a,b}" -> vma, vmb.

    Raises ValueError saying what is wrong with the expression.
    """
    left, right = expr.find("{"), expr.find("}")
    if left == -1 and right == -1:
        return [expr]
    if left == -1 or right < left or expr.count("{") > 1 or expr.count("}") > 1:
        raise ValueError("at most one {...} group is allowed and braces must pair up")
    head, body, tail = expr[:left], expr[left + 1 : right], expr[right + 1 :]
    if ".." in body:
        first, _, last = body.partition("..")
        if not (DIGITS_RE.fullmatch(first) and DIGITS_RE.fullmatch(last)):
            raise ValueError(f"range {{{body}}} must be {{<int>..<int>}}")
        start, end = int(first), int(last)
        if end < start:
            raise ValueError(f"range {{{body}}} is empty")
        if end - start + 1 > MAX_EXPANSION:
            raise ValueError(f"range {{{body}}} expands to more than {MAX_EXPANSION} IDs")
        return [f"{head}{i}{tail}" for i in range(start, end + 1)]
    items = body.split(",")
    if any(not item for item in items):
        raise ValueError(f"list {{{body}}} has an empty item")
    return [f"{head}{item}{tail}" for item in items]


def compile_error(source: str, filename: str) -> tuple[int, str] | None:
    """Returns (line, message) when `source` does not compile as Python 3, else None."""
    try:
        # The bot reports its own warnings; here only errors matter, and test
        # runs that turn warnings into errors must not change the verdict.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as e:
        return e.lineno or 0, f"does not compile: {e.msg}"
    except ValueError as e:  # e.g. NUL bytes, reported as ValueError before 3.12
        return 0, f"does not compile: {e}"
    return None


def validate(config: ConfigSet) -> list[Problem]:
    """Checks the whole set; returns every problem found (empty when valid)."""
    problems: list[Problem] = []
    if config.bots is not None:
        _check_bots(config.bots, config, _Report("bots.cfg", config, problems))
    if config.pools is not None:
        _check_pools(config.pools, _Report("pools.cfg", config, problems))
    if config.settings is not None:
        _check_settings(config, config.settings, _Report("settings.cfg", config, problems))
    if config.base_hooks_script is not None:
        error = compile_error(config.base_hooks_script, "bot_config.py")
        if error:
            problems.append(Problem("bot_config.py", error[0], "", error[1]))
    return problems


class _Report:
    """Collects problems of one file, finding each field's line."""

    def __init__(self, file: str, config: ConfigSet, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        self._lines = config.lines.get(file, {})

    def line(self, path: str) -> int:
        """The line of `path`, else of its nearest located ancestor, else 0."""
        while path:
            if path in self._lines:
                return self._lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return 0

    def where(self, path: str) -> str:
        """A reference like "bots.cfg:4" for messages that point at another field."""
        return f"{self.file}:{self.line(path)}"

    def add(self, path: str, message: str) -> None:
        """Records a problem at `path`."""
        self.problems.append(Problem(self.file, self.line(path), path, message))


def _check_bots(bots: bots_pb2.BotsCfg, config: ConfigSet, report: _Report) -> None:
    for i, key in enumerate(bots.trusted_dimensions):
        if not is_valid_key(key):
            report.add(f"trusted_dimensions[{i}]", f"dimension key {key!r} is invalid")
    if bots.trusted_dimensions and "pool" not in bots.trusted_dimensions:
        report.add("trusted_dimensions", 'must include "pool"')

    # Value -> (group label, field path) of its first appearance.
    names: dict[str, str] = {}
    ids: dict[str, tuple[str, str]] = {}
    prefixes: dict[str, tuple[str, str]] = {}
    default: tuple[str, str] | None = None
    compiled: set[str] = set()
    for i, group in enumerate(bots.bot_group):
        path = f"bot_group[{i}]"
        label = group.name or path
        if group.name:
            if group.name in names:
                report.add(
                    f"{path}.name",
                    f"group name {group.name!r} is already used "
                    f"({report.where(names[group.name])})",
                )
            names.setdefault(group.name, f"{path}.name")
        _check_members(group, path, label, ids, prefixes, report)
        if not group.bot_id and not group.bot_id_prefix:
            if default is not None:
                report.add(
                    path,
                    "only one default group (no bot_id and no bot_id_prefix) is allowed, "
                    f'and group "{default[0]}" ({report.where(default[1])}) already is one',
                )
            else:
                default = (label, path)
        _check_auth(group.auth, path, report)
        _check_forced_dimensions(group.dimensions, path, report)
        if group.bot_config_script:
            _check_script(
                group.bot_config_script, f"{path}.bot_config_script", config, report, compiled
            )


def _check_members(
    group: bots_pb2.BotGroup,
    path: str,
    label: str,
    ids: dict[str, tuple[str, str]],
    prefixes: dict[str, tuple[str, str]],
    report: _Report,
) -> None:
    for j, expr in enumerate(group.bot_id):
        field = f"{path}.bot_id[{j}]"
        if not expr or any(c.isspace() for c in expr):
            report.add(field, f"bot ID {expr!r} is empty or contains whitespace")
            continue
        try:
            expanded = expand_bot_id(expr)
        except ValueError as e:
            report.add(field, f"bot ID expression {expr!r}: {e}")
            continue
        for bot_id in expanded:
            if bot_id in ids:
                other, other_path = ids[bot_id]
                report.add(
                    field,
                    f'bot ID "{bot_id}" is already in group "{other}" ({report.where(other_path)})',
                )
                break
            ids[bot_id] = (label, field)
    for j, prefix in enumerate(group.bot_id_prefix):
        field = f"{path}.bot_id_prefix[{j}]"
        if not prefix or any(c.isspace() for c in prefix):
            report.add(field, f"bot ID prefix {prefix!r} is empty or contains whitespace")
        elif prefix in prefixes:
            other, other_path = prefixes[prefix]
            report.add(
                field,
                f'bot ID prefix "{prefix}" is already in group "{other}" '
                f"({report.where(other_path)})",
            )
        else:
            prefixes[prefix] = (label, field)


def _check_auth(entries: Iterable[bots_pb2.BotAuth], path: str, report: _Report) -> None:
    entries = list(entries)
    if not entries:
        report.add(f"{path}.auth", "a bot group needs at least one auth entry")
    for k, auth in enumerate(entries):
        field = f"{path}.auth[{k}]"
        if not auth.ip_allowlist and not auth.bot_token_sha256:
            report.add(field, "an auth entry must set ip_allowlist and/or bot_token_sha256")
        for m, cidr in enumerate(auth.ip_allowlist):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as e:
                report.add(f"{field}.ip_allowlist[{m}]", f"{cidr!r} is not a CIDR range: {e}")
        for m, digest in enumerate(auth.bot_token_sha256):
            if not TOKEN_SHA256_RE.fullmatch(digest):
                report.add(
                    f"{field}.bot_token_sha256[{m}]",
                    "must be a SHA-256 digest: 64 lowercase hex digits",
                )


def _check_forced_dimensions(dimensions: Iterable[str], path: str, report: _Report) -> None:
    for j, item in enumerate(dimensions):
        field = f"{path}.dimensions[{j}]"
        key, sep, value = item.partition(":")
        if not sep:
            report.add(field, f'{item!r} is not of the form "key:value"')
        elif not is_valid_key(key):
            report.add(field, f"dimension key {key!r} is invalid")
        elif problem := value_error(value):
            report.add(field, f"dimension {key!r} value {value!r} {problem}")


def _check_script(
    name: str, field: str, config: ConfigSet, report: _Report, compiled: set[str]
) -> None:
    if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".py"):
        report.add(field, f"{name!r} must be the name of a .py file directly under scripts/")
    elif name not in config.scripts:
        report.add(field, f"script {name!r} is not in scripts/")
    elif name not in compiled:
        # Reported once, at the script itself, however many groups use it.
        compiled.add(name)
        error = compile_error(config.scripts[name], f"scripts/{name}")
        if error:
            report.problems.append(
                Problem(
                    f"scripts/{name}", error[0], "", f"{error[1]} (used by {report.where(field)})"
                )
            )


def _check_pools(pools: pools_pb2.PoolsCfg, report: _Report) -> None:
    seen: dict[str, str] = {}
    for i, pool in enumerate(pools.pool):
        path = f"pool[{i}]"
        if not pool.name:
            report.add(f"{path}.name", "a pool needs at least one name")
        for j, name in enumerate(pool.name):
            field = f"{path}.name[{j}]"
            if problem := value_error(name):
                report.add(field, f"pool name {name!r} {problem}")
            elif name in seen:
                report.add(field, f'pool "{name}" is already defined ({report.where(seen[name])})')
            else:
                seen[name] = field
        for j, who in enumerate(pool.schedulers):
            if not who.strip() or who != who.strip():
                report.add(f"{path}.schedulers[{j}]", f"scheduler {who!r} is empty or padded")
            elif problem := acl_entry_error(who):
                report.add(f"{path}.schedulers[{j}]", problem)
        for j, account in enumerate(pool.allowed_service_account):
            if not account or any(c.isspace() for c in account):
                report.add(
                    f"{path}.allowed_service_account[{j}]",
                    f"service account {account!r} is empty or contains whitespace",
                )
        if pool.scheduling_algorithm not in pools_pb2.SchedulingAlgorithm.values():
            report.add(
                f"{path}.scheduling_algorithm",
                f"unknown scheduling algorithm {pool.scheduling_algorithm}",
            )


def _check_settings(config: ConfigSet, settings: settings_pb2.SettingsCfg, report: _Report) -> None:
    defaults = Settings()
    for name, (low, high) in SETTINGS_RANGES.items():
        value = getattr(settings, name)
        if value and not low <= value <= high:
            report.add(
                name,
                f"{value} is out of range {low}..{high} "
                f"(0 means the default, {getattr(defaults, name)})",
            )
    if settings.server_url and (problem := server_url_error(settings.server_url)):
        report.add("server_url", f"{settings.server_url!r} {problem}")
    if settings.anonymous_role and settings.anonymous_role not in ROLE_ORDER:
        report.add(
            "anonymous_role",
            f"unknown role {settings.anonymous_role!r}; known: {', '.join(ROLE_ORDER)}, "
            'or "" for none',
        )

    deployment = settings.bot_deployment
    for channel in ("stable", "canary"):
        archive = getattr(deployment, channel).archive_file
        field = f"bot_deployment.{channel}.archive_file"
        if archive and not (config.config_dir / archive).is_file():
            report.add(field, f"archive {archive!r} does not exist (relative to the config dir)")
    if deployment.canary.archive_file and not deployment.stable.archive_file:
        report.add("bot_deployment.canary", "a canary archive requires a stable archive")
    if not 0 <= deployment.canary_percent <= 100:
        report.add(
            "bot_deployment.canary_percent", f"{deployment.canary_percent} is out of range 0..100"
        )
    elif deployment.canary_percent and not deployment.canary.archive_file:
        report.add("bot_deployment.canary_percent", "is set but there is no canary archive")


def server_url_error(url: str) -> str:
    """Why `url` is not of the form http(s)://host[:port], or ''."""
    if any(c.isspace() for c in url):
        return "contains whitespace"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as e:
        return f"is not a URL: {e}"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return "must name a host (and no user)"
    if parts.path or parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must be http(s)://host[:port] without a path or trailing slash"
    if port == 0:
        return "has port 0"
    return ""
