"""Reads a config directory into a validated `ConfigSnapshot`.

The directory holds `bots.cfg` (required), `pools.cfg` and `settings.cfg`
(text-format protobuf; missing means empty), `bot_config.py` (the base hooks
script baked into bot archives; optional) and `scripts/*.py` (hooks scripts
named by bot groups). `read_config` reads and parses everything once, so the
revision and the snapshot describe the same bytes; `validation.validate`
judges the set; `snapshot_of` builds what the rest of the server reads.
`LiveConfig` (server.config.live) drives this on start, on change and on SIGHUP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from google.protobuf import descriptor, message, text_format

from protos.config import bots_pb2, pools_pb2, settings_pb2
from server.clock import Clock
from server.config.model import BotAuthRule, BotGroup, ConfigSnapshot, Settings
from server.config.validation import (
    SETTINGS_RANGES,
    ConfigInvalid,
    ConfigSet,
    Problem,
    expand_bot_id,
    validate,
)
from server.model import BotDimensions

BOTS_CFG = "bots.cfg"
POOLS_CFG = "pools.cfg"
SETTINGS_CFG = "settings.cfg"
BASE_HOOKS = "bot_config.py"
SCRIPTS_DIR = "scripts"
# Every file whose edit can change the snapshot, besides scripts/*.py and archives.
FIXED_FILES = (BOTS_CFG, POOLS_CFG, SETTINGS_CFG, BASE_HOOKS)

_M = TypeVar("_M", bound=message.Message)

if TYPE_CHECKING:
    # Messages carry either the pure-Python or the upb descriptor classes.
    from google._upb import _message as upb

    _Descriptor: TypeAlias = descriptor.Descriptor | upb.Descriptor
    _Field: TypeAlias = descriptor.FieldDescriptor | upb.FieldDescriptor


@dataclasses.dataclass(frozen=True)
class ConfigRead:
    """One read of a config directory: the parsed set, its revision, read and syntax problems."""

    config_set: ConfigSet
    revision: str
    problems: tuple[Problem, ...]
    # Prebuilt bot archives named by settings.cfg, so watchers can stat them too.
    archive_paths: tuple[pathlib.Path, ...]


def load(config_dir: str | os.PathLike[str], *, clock: Clock) -> ConfigSnapshot:
    """Reads, validates and returns the snapshot of `config_dir`. Raises ConfigInvalid."""
    return snapshot_of(read_config(config_dir), clock=clock)


def check(read: ConfigRead) -> list[Problem]:
    """Every problem of a read set: unreadable files, syntax, then the rules; sorted."""
    problems = [*read.problems, *validate(read.config_set)]
    return sorted(problems, key=lambda p: (p.file, p.line))


def snapshot_of(read: ConfigRead, *, clock: Clock) -> ConfigSnapshot:
    """Builds the snapshot of a read set. Raises ConfigInvalid listing every problem."""
    problems = check(read)
    if problems:
        raise ConfigInvalid(problems)
    config = read.config_set
    assert config.bots is not None  # a missing or unparsable bots.cfg is a problem
    pools = config.pools or pools_pb2.PoolsCfg()
    settings = config.settings or settings_pb2.SettingsCfg()
    return ConfigSnapshot(
        revision=read.revision,
        loaded_ts=clock.now(),
        config_dir=str(config.config_dir),
        bots=config.bots,
        pools=pools,
        settings_proto=settings,
        settings=settings_with_defaults(settings, config.config_dir),
        groups=tuple(
            _group(i, group, config.scripts) for i, group in enumerate(config.bots.bot_group)
        ),
        base_hooks_script=config.base_hooks_script or "",
    )


def read_config(config_dir: str | os.PathLike[str]) -> ConfigRead:
    """Reads and parses a config directory; bad content becomes problems, never exceptions."""
    root = pathlib.Path(config_dir)
    problems: list[Problem] = []
    raw: dict[str, bytes] = {}
    script_names = sorted(p.name for p in (root / SCRIPTS_DIR).glob("*.py") if p.is_file())
    for name in (*FIXED_FILES, *(f"{SCRIPTS_DIR}/{s}" for s in script_names)):
        try:
            raw[name] = (root / name).read_bytes()
        except FileNotFoundError:
            if name == BOTS_CFG:
                problems.append(Problem(name, 0, "", f"is missing (looked in {root})"))
        except OSError as e:
            problems.append(Problem(name, 0, "", f"cannot be read: {e.strerror or e}"))

    texts: dict[str, str] = {}
    for name, data in raw.items():
        try:
            texts[name] = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data[: e.start].count(b"\n") + 1
            problems.append(Problem(name, line, "", "is not valid UTF-8"))

    lines: dict[str, dict[str, int]] = {}
    bots = _parse(BOTS_CFG, texts, bots_pb2.BotsCfg(), lines, problems)
    pools = _parse(POOLS_CFG, texts, pools_pb2.PoolsCfg(), lines, problems)
    settings = _parse(SETTINGS_CFG, texts, settings_pb2.SettingsCfg(), lines, problems)

    # Archive name as written in settings.cfg -> its path.
    archives: dict[str, pathlib.Path] = {}
    if settings is not None:
        deployment = settings.bot_deployment
        for archive in (deployment.stable.archive_file, deployment.canary.archive_file):
            if archive:
                archives[archive] = root / archive

    config_set = ConfigSet(
        config_dir=root,
        bots=bots if BOTS_CFG in texts else None,
        pools=pools,
        settings=settings,
        lines=lines,
        scripts={
            name.removeprefix(f"{SCRIPTS_DIR}/"): text
            for name, text in texts.items()
            if name.startswith(f"{SCRIPTS_DIR}/")
        },
        base_hooks_script=texts.get(BASE_HOOKS),
    )
    return ConfigRead(
        config_set=config_set,
        revision=_revision(raw, archives),
        problems=tuple(problems),
        archive_paths=tuple(archives.values()),
    )


def settings_with_defaults(proto: settings_pb2.SettingsCfg, config_dir: pathlib.Path) -> Settings:
    """settings.cfg with zeros replaced by defaults and archive paths made absolute."""
    defaults = Settings()
    numbers = {
        name: getattr(proto, name)
        if getattr(proto, name) or _has_presence(proto, name)
        else getattr(defaults, name)
        for name in SETTINGS_RANGES
    }
    deployment = proto.bot_deployment
    return dataclasses.replace(
        defaults,
        **numbers,
        force_bots_to_sleep_and_not_run_task=proto.force_bots_to_sleep_and_not_run_task,
        server_url=proto.server_url,
        stable_archive_file=_archive_path(config_dir, deployment.stable.archive_file),
        canary_archive_file=_archive_path(config_dir, deployment.canary.archive_file),
        canary_percent=deployment.canary_percent,
        anonymous_role=proto.anonymous_role,
    )


def _has_presence(proto: settings_pb2.SettingsCfg, name: str) -> bool:
    """True for an `optional` field set explicitly, where zero is a real value."""
    field = proto.DESCRIPTOR.fields_by_name[name]
    # mypy-protobuf types HasField with a Literal of field names; `name` is one.
    return field.has_presence and proto.HasField(name)  # type: ignore[arg-type]


def locate_fields(text: str, desc: _Descriptor) -> dict[str, int]:
    """Maps field paths of a text proto to their 1-based lines.

    Paths look like "bot_group[1].bot_id[0]"; a repeated field's bare path
    ("bot_group") maps to its first occurrence. Best effort: meant for text
    that text_format already parsed, and it stops quietly where it gets lost,
    since a missing line only makes a message less precise.
    """
    locator = _Locator(text)
    with contextlib.suppress(text_format.ParseError, LookupError):
        locator.message(desc, "", end="")
    return locator.lines


def _parse(
    name: str,
    texts: dict[str, str],
    proto: _M,
    lines: dict[str, dict[str, int]],
    problems: list[Problem],
) -> _M | None:
    """Parses one text proto; a missing file is an empty message, a syntax error None."""
    text = texts.get(name)
    if text is None:
        return proto
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        # The message starts with "<line>:<column> : "; the Problem carries the line.
        detail = str(e).split(" : ", 1)[-1] if e.GetLine() else str(e)
        problems.append(Problem(name, e.GetLine() or 0, "", f"syntax error: {detail}"))
        return None
    lines[name] = locate_fields(text, proto.DESCRIPTOR)
    return proto


class _LineCounter:
    """Feeds lines to the tokenizer and counts them.

    The tokenizer pulls a new line only once the current one is used up, so
    the count is always the line of the current token.
    """

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            self.line += 1
            yield line


class _Locator:
    """A walk over text-format tokens that records where each field is."""

    def __init__(self, text: str) -> None:
        self._counter = _LineCounter(text)
        self._tokens = text_format.Tokenizer(self._counter)
        self.lines: dict[str, int] = {}

    def message(self, desc: _Descriptor, prefix: str, end: str) -> None:
        """Reads fields up to `end` ("" for the end of the text)."""
        tokens = self._tokens
        counts: dict[str, int] = {}
        while not tokens.AtEnd():
            if end and tokens.TryConsume(end):
                return
            line = self._counter.line
            name = tokens.ConsumeIdentifierOrNumber()
            field = desc.fields_by_name[name]  # KeyError: lost, locate_fields stops
            base = prefix + name
            self.lines.setdefault(base, line)
            if field.message_type is None:
                tokens.Consume(":")
            else:
                tokens.TryConsume(":")
            if tokens.TryConsume("["):
                # The list form "name: [a, b]": each element has its own line.
                while not tokens.TryConsume("]"):
                    self._element(field, base, counts, self._counter.line)
                    tokens.TryConsume(",")
            else:
                self._element(field, base, counts, line)
            if not tokens.TryConsume(","):
                tokens.TryConsume(";")

    def _element(self, field: _Field, base: str, counts: dict[str, int], line: int) -> None:
        """Records one value of `field` (indexed when repeated) and reads past it."""
        path = base
        if field.is_repeated:
            counts[field.name] = counts.get(field.name, 0) + 1
            path = f"{base}[{counts[field.name] - 1}]"
        self.lines[path] = line
        tokens = self._tokens
        if field.message_type is not None:
            end = ">" if tokens.TryConsume("<") else "}"
            if end == "}":
                tokens.Consume("{")
            self.message(field.message_type, path + ".", end)
            return
        # Adjacent string literals concatenate ("a" "b"): they are one value.
        is_string = tokens.token[:1] in ("'", '"')
        tokens.NextToken()
        while is_string and tokens.token[:1] in ("'", '"'):
            tokens.NextToken()


def _revision(raw: dict[str, bytes], archives: dict[str, pathlib.Path]) -> str:
    """Hex SHA-256 over (name, content digest) of every file, sorted by name.

    Names are relative, so a copy of the set elsewhere has the same revision.
    Archives count too: replacing a pinned bot archive is a config change.
    """
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in raw.items()}
    for name, path in archives.items():
        try:
            digests[f"archive:{name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digests[f"archive:{name}"] = "missing"  # validation reports it
    total = hashlib.sha256()
    for name in sorted(digests):
        total.update(f"{name}\0{digests[name]}\n".encode())
    return total.hexdigest()


def _archive_path(config_dir: pathlib.Path, archive: str) -> str:
    return str((config_dir / archive).resolve()) if archive else ""


def _group(index: int, group: bots_pb2.BotGroup, scripts: Mapping[str, str]) -> BotGroup:
    dimensions: BotDimensions = {}
    for item in group.dimensions:
        key, _, value = item.partition(":")
        values = dimensions.setdefault(key, [])
        if value not in values:
            values.append(value)
    return BotGroup(
        name=group.name or f"bot_group[{index}]",
        bot_ids=frozenset(bot_id for expr in group.bot_id for bot_id in expand_bot_id(expr)),
        bot_id_prefixes=tuple(group.bot_id_prefix),
        auth=tuple(
            BotAuthRule(
                ip_allowlist=tuple(
                    ipaddress.ip_network(cidr, strict=False) for cidr in auth.ip_allowlist
                ),
                bot_token_sha256=frozenset(auth.bot_token_sha256),
                log_if_failed=auth.log_if_failed,
            )
            for auth in group.auth
        ),
        dimensions={key: sorted(values) for key, values in dimensions.items()},
        bot_config_script=group.bot_config_script,
        bot_config_script_body=scripts.get(group.bot_config_script, ""),
        system_service_account=group.system_service_account,
        owners=tuple(group.owners),
    )
