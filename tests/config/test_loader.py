"""Loading: the snapshot built from a config directory, its revision and group lookup."""

from __future__ import annotations

import ipaddress
import pathlib
import shutil
import time
import types
from typing import Any

import pytest

from protos.config import bots_pb2
from server.clock import FakeClock
from server.config import loader, model
from server.config.model import ConfigSnapshot, Settings
from server.config.validation import ConfigInvalid
from tests.config.conftest import PRODUCTION, QUICKSTART, WriteFile

AUTH = 'auth { ip_allowlist: "10.0.0.0/8" }'


def load(config_dir: pathlib.Path) -> ConfigSnapshot:
    """Loads with a fixed fake clock."""
    return loader.load(config_dir, clock=FakeClock(1_000.0))


def test_quickstart_snapshot(quickstart_dir: pathlib.Path) -> None:
    """The quickstart set gives one default group by loopback IP, forcing pool:default,
    and lets callers without a token schedule."""
    snapshot = load(quickstart_dir)
    assert snapshot.loaded_ts == 1_000.0
    assert snapshot.config_dir == str(quickstart_dir)
    assert list(snapshot.bots.trusted_dimensions) == ["pool"]
    (group,) = snapshot.groups
    assert group.name == "default"
    assert group.is_default
    assert group.dimensions == {"pool": ["default"]}
    (rule,) = group.auth
    assert rule.ip_allowlist == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert rule.bot_token_sha256 == frozenset()
    assert snapshot.pool("default") is not None
    assert snapshot.settings == Settings(anonymous_role="scheduler")
    assert "def get_dimensions(bot" in snapshot.base_hooks_script


def test_production_snapshot(production_dir: pathlib.Path) -> None:
    """The production example expands brace IDs, attaches hooks scripts and applies settings."""
    snapshot = load(production_dir)
    ci, gpu = snapshot.groups
    assert ci.bot_id_prefixes == ("ci-linux-",)
    assert gpu.bot_ids == {"gpu1-m1", "gpu2-m1", "gpu3-m1", "gpu4-m1", "gpu-spare"}
    assert "get_authentication_headers" in gpu.bot_config_script_body
    assert gpu.bot_config_script == "token_auth.py"
    assert gpu.system_service_account == "bot"
    assert ci.auth[0].log_if_failed is True
    assert len(ci.auth[0].bot_token_sha256) == 1
    assert ci.dimensions == {"pool": ["ci"], "zone": ["eu-west"]}
    assert snapshot.settings.max_bot_sleep_time == 30
    assert snapshot.settings.server_url == "https://drover.example.com"
    assert snapshot.settings.long_poll_secs == Settings().long_poll_secs
    assert snapshot.settings.anonymous_role == "viewer"
    assert snapshot.group_for("unknown-bot") is None
    assert snapshot.base_hooks_script == ""


def test_missing_pools_and_settings_mean_empty(quickstart_dir: pathlib.Path) -> None:
    """Without pools.cfg and settings.cfg the set loads with no pools and default settings."""
    (quickstart_dir / "pools.cfg").unlink()
    (quickstart_dir / "settings.cfg").unlink()
    (quickstart_dir / "bot_config.py").unlink()
    snapshot = load(quickstart_dir)
    assert list(snapshot.pools.pool) == []
    assert snapshot.settings == Settings()
    assert snapshot.base_hooks_script == ""


def test_invalid_set_raises_config_invalid(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """Loading an invalid set raises ConfigInvalid carrying every problem."""
    write("bots.cfg", "bot_group {}\nbot_group {}\n")
    with pytest.raises(ConfigInvalid) as caught:
        load(quickstart_dir)
    assert [p.field for p in caught.value.problems] == [
        "bot_group[0].auth",
        "bot_group[1]",
        "bot_group[1].auth",
    ]


def test_settings_defaults_and_overrides(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """Set numbers override their defaults, zeros and absent fields keep them.

    `long_poll_secs` is the exception: an explicit 0 turns long polling off.
    """
    write(
        "settings.cfg",
        "bot_death_timeout_secs: 120\n"
        "max_bot_sleep_time: 0\n"
        "force_bots_to_sleep_and_not_run_task: true\n",
    )
    settings = load(quickstart_dir).settings
    assert settings.bot_death_timeout_secs == 120
    assert settings.max_bot_sleep_time == 60
    assert settings.long_poll_secs == 40
    write("settings.cfg", "long_poll_secs: 0\n")
    assert load(quickstart_dir).settings.long_poll_secs == 0
    assert settings.session_lifetime_secs == 3600
    assert settings.force_bots_to_sleep_and_not_run_task is True


def test_archive_paths_resolve_against_config_dir(
    write: WriteFile,
    quickstart_dir: pathlib.Path,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prebuilt archive paths are made absolute relative to the config dir, not the cwd."""
    write("archives/stable.zip", "PK-stable")
    write("archives/canary.zip", "PK-canary")
    write(
        "settings.cfg",
        "bot_deployment {\n"
        '  stable { archive_file: "archives/stable.zip" }\n'
        '  canary { archive_file: "archives/canary.zip" }\n'
        "  canary_percent: 25\n"
        "}\n",
    )
    monkeypatch.chdir(tmp_path)
    settings = load(pathlib.Path(quickstart_dir.name)).settings
    assert settings.stable_archive_file == str((quickstart_dir / "archives/stable.zip").resolve())
    assert settings.canary_archive_file == str((quickstart_dir / "archives/canary.zip").resolve())
    assert settings.canary_percent == 25


def test_revision_is_a_digest_of_the_files(
    write: WriteFile, quickstart_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """The revision is stable for the same bytes, wherever they are, and changes with any file."""
    first = loader.read_config(quickstart_dir).revision
    assert len(first) == 64
    assert int(first, 16) >= 0
    (quickstart_dir / "bots.cfg").touch()
    assert loader.read_config(quickstart_dir).revision == first
    assert loader.read_config(shutil.copytree(quickstart_dir, tmp_path / "copy")).revision == first

    seen = {first}
    for name, text in [
        ("pools.cfg", 'pool { name: "default" }\n'),
        ("settings.cfg", "max_bot_sleep_time: 5\n"),
        ("bot_config.py", "# hooks\n"),
        ("scripts/extra.py", "X = 1\n"),
    ]:
        write(name, text)
        revision = loader.read_config(quickstart_dir).revision
        assert revision not in seen, name
        seen.add(revision)


def test_revision_covers_archive_contents(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """Replacing a pinned bot archive gives a new revision though no config text changed."""
    write("bot.zip", "PK-1")
    write("settings.cfg", 'bot_deployment { stable { archive_file: "bot.zip" } }\n')
    before = loader.read_config(quickstart_dir)
    assert before.archive_paths == (quickstart_dir / "bot.zip",)
    write("bot.zip", "PK-2")
    assert loader.read_config(quickstart_dir).revision != before.revision


def test_forced_dimensions_group_values(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """Forced "key:value" strings become a dict of sorted, deduplicated values."""
    write(
        "bots.cfg",
        f"bot_group {{\n  {AUTH}\n"
        '  dimensions: ["pool:b", "pool:a", "os:Linux", "pool:b", "x:y:z"]\n}\n',
    )
    (group,) = load(quickstart_dir).groups
    assert group.dimensions == {"pool": ["a", "b"], "os": ["Linux"], "x": ["y:z"]}


LOOKUP_BOTS_CFG = f"""
bot_group {{
  name: "exact"
  bot_id: "vm{{1..2}}"
  bot_id: "build"
  {AUTH}
}}
bot_group {{
  name: "short-prefix"
  bot_id_prefix: "bu"
  {AUTH}
}}
bot_group {{
  name: "long-prefix"
  bot_id_prefix: "build-"
  {AUTH}
}}
bot_group {{
  name: "default"
  {AUTH}
}}
"""


@pytest.mark.parametrize(
    ("bot_id", "group"),
    [
        ("vm1", "exact"),
        ("vm2--3", "exact"),
        ("build", "exact"),
        ("build-7", "long-prefix"),
        ("bus", "short-prefix"),
        ("vm3", "default"),
    ],
    ids=["exact", "composite", "exact beats prefix", "longest prefix", "prefix", "default"],
)
def test_group_for_lookup_order(
    write: WriteFile, quickstart_dir: pathlib.Path, bot_id: str, group: str
) -> None:
    """Lookup tries the exact ID (or a composite ID's host), longest prefix, then default."""
    write("bots.cfg", LOOKUP_BOTS_CFG)
    found = load(quickstart_dir).group_for(bot_id)
    assert found is not None
    assert found.name == group


def test_group_for_without_default_finds_none(
    write: WriteFile, quickstart_dir: pathlib.Path
) -> None:
    """Without a default group, a bot matching no ID or prefix has no group."""
    write("bots.cfg", LOOKUP_BOTS_CFG.split('bot_group {\n  name: "default"')[0])
    snapshot = load(quickstart_dir)
    assert snapshot.group_for("vm3") is None
    assert snapshot.group_for("vm1") is not None


def test_group_for_remembers_a_bounded_number_of_bots(
    write: WriteFile, quickstart_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers are remembered, repeated lookups agree, and a flood of IDs is forgotten."""
    monkeypatch.setattr(model, "GROUP_CACHE_SIZE", 3)
    write("bots.cfg", LOOKUP_BOTS_CFG)
    snapshot = load(quickstart_dir)
    names = [(g.name if g else None) for g in map(snapshot.group_for, ["vm1", "build-7", "vm3"])]
    for bot_id in [f"unknown-{n}" for n in range(10)] + ["vm1", "build-7", "vm3"]:
        snapshot.group_for(bot_id)
        assert len(snapshot._groups_by_bot) <= 3
    again = [(g.name if g else None) for g in map(snapshot.group_for, ["vm1", "build-7", "vm3"])]
    assert names == again == ["exact", "long-prefix", "default"]


def test_unnamed_group_is_named_by_position(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """A group without a name is called by its position in bots.cfg."""
    write(
        "bots.cfg",
        f'bot_group {{\n  name: "a"\n  bot_id: "x"\n  {AUTH}\n}}\nbot_group {{ {AUTH} }}\n',
    )
    assert [g.name for g in load(quickstart_dir).groups] == ["a", "bot_group[1]"]


def test_locate_fields_handles_lists_nesting_and_separators() -> None:
    """The locator maps each field path to its line across list, angle and separator syntax."""
    text = (
        "# comment\n"
        'trusted_dimensions: "pool"\n'
        "bot_group {\n"
        '  bot_id: ["a",\n'
        '    "b" "c"]\n'
        '  auth < ip_allowlist: "::1"; log_if_failed: true >\n'
        "}\n"
        "bot_group: {\n"
        '  auth: [{ bot_token_sha256: "x" },\n'
        '         { ip_allowlist: "1.2.3.4" }]\n'
        "}\n"
    )
    lines = loader.locate_fields(text, bots_pb2.BotsCfg.DESCRIPTOR)
    assert lines["trusted_dimensions[0]"] == 2
    assert lines["bot_group[0]"] == 3
    assert lines["bot_group[0].bot_id[0]"] == 4
    assert lines["bot_group[0].bot_id[1]"] == 5
    assert "bot_group[0].bot_id[2]" not in lines
    assert lines["bot_group[0].auth[0].log_if_failed"] == 6
    assert lines["bot_group[1]"] == 8
    assert lines["bot_group[1].auth[0].bot_token_sha256[0]"] == 9
    assert lines["bot_group[1].auth[1].ip_allowlist[0]"] == 10


def test_locate_fields_stops_quietly_on_text_it_cannot_follow() -> None:
    """On text that is not a valid message the locator keeps what it found and does not raise."""
    lines = loader.locate_fields(
        'trusted_dimensions: "pool"\nnope: 1\n', bots_pb2.BotsCfg.DESCRIPTOR
    )
    assert lines == {"trusted_dimensions": 1, "trusted_dimensions[0]": 1}


def _run_script(path: pathlib.Path) -> dict[str, Any]:
    """Runs a hooks script the way a bot loads it and returns its globals."""
    namespace: dict[str, Any] = {"__name__": "bot_config"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


def test_shipped_base_hooks_return_the_defaults() -> None:
    """The quickstart bot_config.py hands back the bot's own values and sends no credentials."""
    hooks = _run_script(QUICKSTART / "bot_config.py")
    bot = types.SimpleNamespace(dimensions={"id": ["bot1"]}, state={"sleep_streak": 0})
    assert hooks["get_dimensions"](bot) is bot.dimensions
    assert hooks["get_state"](bot) is bot.state
    assert hooks["get_authentication_headers"](bot) == (None, None)
    assert hooks["on_before_task"](bot, "bot_file", ["run"], {}) is None
    assert hooks["on_after_task"](bot, False, False, {}, {}) is None


def test_production_token_script_sends_the_bearer_token(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production token_auth.py reads the bot's token file into an Authorization header."""
    token_file = tmp_path / "bot_token"
    token_file.write_text("s3cret\n")
    monkeypatch.setenv("DROVER_BOT_TOKEN_FILE", str(token_file))
    hooks = _run_script(PRODUCTION / "scripts" / "token_auth.py")
    headers, expiry = hooks["get_authentication_headers"](types.SimpleNamespace())
    assert headers == {"Authorization": "Bearer s3cret"}
    assert expiry > time.time()
