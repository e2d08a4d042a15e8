"""Validation: each rule refuses a bad set with the right file, line and field.

settings.cfg has its own file, tests/config/test_validation_settings.py.
"""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from server.config.validation import (
    ConfigError,
    ConfigInvalid,
    Problem,
    expand_bot_id,
)
from server.errors import DroverError
from tests.config.conftest import PRODUCTION, QUICKSTART, WriteFile, only_problem, problems_in

AUTH = 'auth { ip_allowlist: "10.0.0.0/8" }'


def cfg(text: str) -> str:
    """Dedents a config text written inline in a test."""
    return textwrap.dedent(text).lstrip("\n")


@pytest.mark.parametrize("config_dir", [QUICKSTART, PRODUCTION], ids=["quickstart", "production"])
def test_shipped_config_sets_validate(config_dir: pathlib.Path) -> None:
    """The quickstart configs and the production example are valid as shipped."""
    assert problems_in(config_dir) == []


def test_problem_reads_file_line_field_message(
    write: WriteFile, quickstart_dir: pathlib.Path
) -> None:
    """A duplicate bot ID is reported in the documented form, pointing at both places."""
    write(
        "bots.cfg",
        cfg(f"""
        bot_group {{
          name: "linux"
          bot_id: "vm0"
          bot_id: "vm1"
          {AUTH}
        }}
        bot_group {{
          name: "mac"
          bot_id: "vm{{1..3}}"
          {AUTH}
        }}
        """),
    )
    assert str(only_problem(quickstart_dir)) == (
        'bots.cfg:9: bot_group[1].bot_id[0]: bot ID "vm1" is already in group "linux" (bots.cfg:4)'
    )


BOTS_CASES = {
    "duplicate prefix": (
        f'bot_group {{\n  bot_id_prefix: "ci-"\n  {AUTH}\n}}\n'
        f'bot_group {{\n  bot_id_prefix: "ci-"\n  {AUTH}\n}}\n',
        6,
        "bot_group[1].bot_id_prefix[0]",
        'bot ID prefix "ci-" is already in group "bot_group[0]" (bots.cfg:2)',
    ),
    "duplicate ID in one group": (
        f'bot_group {{\n  bot_id: "a"\n  bot_id: "a"\n  {AUTH}\n}}\n',
        3,
        "bot_group[0].bot_id[1]",
        'bot ID "a" is already in group',
    ),
    "two default groups": (
        f'bot_group {{\n  name: "one"\n  {AUTH}\n}}\nbot_group {{\n  name: "two"\n  {AUTH}\n}}\n',
        5,
        "bot_group[1]",
        'only one default group (no bot_id and no bot_id_prefix) is allowed, and group "one" '
        "(bots.cfg:1) already is one",
    ),
    "two brace groups": (
        f'bot_group {{\n  bot_id: "vm{{1..2}}-{{a,b}}"\n  {AUTH}\n}}\n',
        2,
        "bot_group[0].bot_id[0]",
        "at most one {...} group",
    ),
    "empty brace range": (
        f'bot_group {{\n  bot_id: "vm{{3..1}}"\n  {AUTH}\n}}\n',
        2,
        "bot_group[0].bot_id[0]",
        "is empty",
    ),
    "bot ID with whitespace": (
        f'bot_group {{\n  bot_id: "vm 1"\n  {AUTH}\n}}\n',
        2,
        "bot_group[0].bot_id[0]",
        "contains whitespace",
    ),
    "group without auth": (
        'bot_group {\n  name: "x"\n  dimensions: "pool:x"\n}\n',
        1,
        "bot_group[0].auth",
        "at least one auth entry",
    ),
    "auth entry without a method": (
        "bot_group {\n  auth { ip_allowlist: '::1' }\n  auth {\n    log_if_failed: true\n  }\n}\n",
        3,
        "bot_group[0].auth[1]",
        "must set ip_allowlist and/or bot_token_sha256",
    ),
    "CIDR out of range": (
        'bot_group {\n  name: "x"\n  auth { ip_allowlist: "300.1.2.3/8" }\n}\n',
        3,
        "bot_group[0].auth[0].ip_allowlist[0]",
        "'300.1.2.3/8' is not a CIDR range",
    ),
    "CIDR garbage": (
        'bot_group {\n  auth {\n    ip_allowlist: "::1"\n    ip_allowlist: "office"\n  }\n}\n',
        4,
        "bot_group[0].auth[0].ip_allowlist[1]",
        "'office' is not a CIDR range",
    ),
    "token digest in upper case": (
        'bot_group {\n  auth {\n    bot_token_sha256: "' + "AB" * 32 + '"\n  }\n}\n',
        3,
        "bot_group[0].auth[0].bot_token_sha256[0]",
        "64 lowercase hex digits",
    ),
    "token digest too short": (
        'bot_group {\n  auth { bot_token_sha256: ["' + "ab" * 32 + '", "abc"] }\n}\n',
        2,
        "bot_group[0].auth[0].bot_token_sha256[1]",
        "64 lowercase hex digits",
    ),
    "dimension without colon": (
        f'bot_group {{\n  {AUTH}\n  dimensions: "pool"\n}}\n',
        3,
        "bot_group[0].dimensions[0]",
        'is not of the form "key:value"',
    ),
    "dimension with a bad key": (
        f'bot_group {{\n  {AUTH}\n  dimensions: "pool:x"\n  dimensions: "bad key:x"\n}}\n',
        4,
        "bot_group[0].dimensions[1]",
        "dimension key 'bad key' is invalid",
    ),
    "dimension with an empty value": (
        f'bot_group {{\n  {AUTH}\n  dimensions: "pool:"\n}}\n',
        3,
        "bot_group[0].dimensions[0]",
        "value '' is empty",
    ),
    "trusted dimensions without pool": (
        f'trusted_dimensions: "os"\nbot_group {{\n  {AUTH}\n}}\n',
        1,
        "trusted_dimensions",
        'must include "pool"',
    ),
    "missing hooks script": (
        f'bot_group {{\n  {AUTH}\n  bot_config_script: "nope.py"\n}}\n',
        3,
        "bot_group[0].bot_config_script",
        "script 'nope.py' is not in scripts/",
    ),
    "hooks script outside scripts/": (
        f'bot_group {{\n  {AUTH}\n  bot_config_script: "../bot_config.py"\n}}\n',
        3,
        "bot_group[0].bot_config_script",
        "directly under scripts/",
    ),
    "duplicate group name": (
        f'bot_group {{\n  name: "a"\n  bot_id: "x"\n  {AUTH}\n}}\n'
        f'bot_group {{\n  name: "a"\n  bot_id: "y"\n  {AUTH}\n}}\n',
        7,
        "bot_group[1].name",
        "group name 'a' is already used (bots.cfg:2)",
    ),
}


@pytest.mark.parametrize(("text", "line", "field", "message"), BOTS_CASES.values(), ids=BOTS_CASES)
def test_bots_cfg_rule_refuses_with_location(
    write: WriteFile, quickstart_dir: pathlib.Path, text: str, line: int, field: str, message: str
) -> None:
    """Each bots.cfg rule refuses a bad file at the offending field's line."""
    write("bots.cfg", text)
    problem = only_problem(quickstart_dir)
    assert (problem.file, problem.line, problem.field) == ("bots.cfg", line, field)
    assert message in problem.message


POOLS_CASES = {
    "pool without a name": (
        'pool { name: "a" }\npool {\n  description: "x"\n}\n',
        2,
        "pool[1].name",
        "at least one name",
    ),
    "empty pool name": ('pool {\n  name: ""\n}\n', 2, "pool[0].name[0]", "is empty"),
    "padded pool name": ('pool {\n  name: " a"\n}\n', 2, "pool[0].name[0]", "whitespace"),
    "pool name in two pools": (
        'pool {\n  name: "a"\n}\npool {\n  name: "b"\n  name: "a"\n}\n',
        6,
        "pool[1].name[1]",
        'pool "a" is already defined (pools.cfg:2)',
    ),
    "unknown scheduler role": (
        'pool {\n  name: "a"\n  schedulers: "role:boss"\n}\n',
        3,
        "pool[0].schedulers[0]",
        "unknown role 'boss'",
    ),
    "empty scheduler": (
        'pool {\n  name: "a"\n  schedulers: ""\n}\n',
        3,
        "pool[0].schedulers[0]",
        "",
    ),
    "scheduler of an unknown kind": (
        'pool {\n  name: "a"\n  schedulers: "group:ops"\n}\n',
        3,
        "pool[0].schedulers[0]",
        "unknown kind 'group'; an entry is a user name, user:<name>, role:<role>",
    ),
    "scheduler user name with a space": (
        'pool {\n  name: "a"\n  schedulers: "user:al ice"\n}\n',
        3,
        "pool[0].schedulers[0]",
        "'al ice' is not a valid user name",
    ),
    "scheduler service account that is no email": (
        'pool {\n  name: "a"\n  schedulers: "service_account:builder"\n}\n',
        3,
        "pool[0].schedulers[0]",
        "'builder' is not a service account email",
    ),
    "service account with space": (
        'pool {\n  name: "a"\n  allowed_service_account: "a b@x"\n}\n',
        3,
        "pool[0].allowed_service_account[0]",
        "contains whitespace",
    ),
    "unknown scheduling algorithm": (
        'pool {\n  name: "a"\n  scheduling_algorithm: 7\n}\n',
        3,
        "pool[0].scheduling_algorithm",
        "unknown scheduling algorithm 7",
    ),
}


@pytest.mark.parametrize(
    ("text", "line", "field", "message"), POOLS_CASES.values(), ids=POOLS_CASES
)
def test_pools_cfg_rule_refuses_with_location(
    write: WriteFile, quickstart_dir: pathlib.Path, text: str, line: int, field: str, message: str
) -> None:
    """Each pools.cfg rule refuses a bad file at the offending field's line."""
    write("pools.cfg", text)
    problem = only_problem(quickstart_dir)
    assert (problem.file, problem.line, problem.field) == ("pools.cfg", line, field)
    assert message in problem.message


@pytest.mark.parametrize(
    ("file", "text", "line", "message"),
    [
        ("bots.cfg", "bot_group {\n  name: 'x'\n  nmae: 'y'\n}\n", 3, 'has no field named "nmae"'),
        ("pools.cfg", 'pool {\n  name: "a"\n', 2, 'Expected "}"'),
        ("settings.cfg", "\n\nlong_poll_secs: many\n", 3, "Couldn't parse integer"),
        ("settings.cfg", "long_poll_secs: 1\nlong_poll_secs: 2\n", 2, "should not have multiple"),
    ],
    ids=["unknown field", "unclosed brace", "bad integer", "repeated scalar"],
)
def test_syntax_error_is_reported_with_its_line(
    write: WriteFile, quickstart_dir: pathlib.Path, file: str, text: str, line: int, message: str
) -> None:
    """A text-proto syntax error names the file and the line it is on."""
    write(file, text)
    problem = only_problem(quickstart_dir)
    assert (problem.file, problem.line, problem.field) == (file, line, "")
    assert problem.message.startswith("syntax error: ")
    assert message in problem.message


def test_not_utf8_is_reported_with_its_line(quickstart_dir: pathlib.Path) -> None:
    """A config file with bytes that are not UTF-8 is refused at the line holding them."""
    (quickstart_dir / "pools.cfg").write_bytes(b'# ok\npool { name: "\xff" }\n')
    problem = only_problem(quickstart_dir)
    assert (problem.file, problem.line) == ("pools.cfg", 2)
    assert "UTF-8" in problem.message


def test_missing_bots_cfg_is_refused(quickstart_dir: pathlib.Path) -> None:
    """bots.cfg is the one required file."""
    (quickstart_dir / "bots.cfg").unlink()
    problem = only_problem(quickstart_dir)
    assert (problem.file, problem.line) == ("bots.cfg", 0)
    assert "is missing" in problem.message


def test_hooks_script_that_does_not_compile_is_refused(
    write: WriteFile, quickstart_dir: pathlib.Path
) -> None:
    """A referenced scripts/*.py with a syntax error is reported at the script's line, once."""
    write("scripts/hooks.py", '"""Hooks."""\n\ndef get_state(bot)\n    return None\n')
    write(
        "bots.cfg",
        f'bot_group {{\n  bot_id: "a"\n  {AUTH}\n  bot_config_script: "hooks.py"\n}}\n'
        f'bot_group {{\n  bot_id: "b"\n  {AUTH}\n  bot_config_script: "hooks.py"\n}}\n',
    )
    problem = only_problem(quickstart_dir)
    assert (problem.file, problem.line, problem.field) == ("scripts/hooks.py", 3, "")
    assert "does not compile" in problem.message
    assert "bots.cfg:4" in problem.message


def test_unreferenced_broken_script_is_ignored(
    write: WriteFile, quickstart_dir: pathlib.Path
) -> None:
    """Only scripts a bot group names are compiled; a draft lying in scripts/ is harmless."""
    write("scripts/draft.py", "def (:\n")
    assert problems_in(quickstart_dir) == []


def test_script_warnings_do_not_refuse(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """A script that compiles with a SyntaxWarning is valid, even with warnings as errors."""
    write("scripts/hooks.py", 'PATTERN = "\\d+"\n')
    write("bots.cfg", f'bot_group {{\n  {AUTH}\n  bot_config_script: "hooks.py"\n}}\n')
    assert problems_in(quickstart_dir) == []


def test_base_hooks_that_do_not_compile_are_refused(
    write: WriteFile, quickstart_dir: pathlib.Path
) -> None:
    """bot_config.py must compile, since it is baked into every bot archive."""
    write("bot_config.py", "import os\nif True\n")
    problem = only_problem(quickstart_dir)
    assert (problem.file, problem.line) == ("bot_config.py", 2)
    assert "does not compile" in problem.message


def test_all_problems_are_reported_at_once(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """One pass reports every problem of every file, sorted by file and line."""
    write("bots.cfg", 'bot_group {\n  auth { ip_allowlist: "x" }\n  dimensions: "y"\n}\n')
    write("pools.cfg", 'pool { name: "" }\n')
    write("settings.cfg", "max_bot_sleep_time: 0\nlong_poll_secs: 99\n")
    assert [(p.file, p.line, p.field) for p in problems_in(quickstart_dir)] == [
        ("bots.cfg", 2, "bot_group[0].auth[0].ip_allowlist[0]"),
        ("bots.cfg", 3, "bot_group[0].dimensions[0]"),
        ("pools.cfg", 1, "pool[0].name[0]"),
        ("settings.cfg", 2, "long_poll_secs"),
    ]


def test_config_invalid_lists_problems_one_per_line() -> None:
    """ConfigInvalid is a config (and Drover) error whose text has one problem per line."""
    problems = [Problem("bots.cfg", 3, "bot_group[0]", "bad"), Problem("pools.cfg", 0, "", "worse")]
    error = ConfigInvalid(problems)
    assert isinstance(error, ConfigError)
    assert isinstance(error, DroverError)
    assert error.problems == tuple(problems)
    assert str(error).splitlines() == [
        "The config set is invalid: 2 problem(s)",
        "bots.cfg:3: bot_group[0]: bad",
        "pools.cfg:0: worse",
    ]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("vm1", ["vm1"]),
        ("vm{1..3}-m1", ["vm1-m1", "vm2-m1", "vm3-m1"]),
        ("vm{a,b}", ["vma", "vmb"]),
        ("{7..7}", ["7"]),
    ],
)
def test_bot_id_expansion(expr: str, expected: list[str]) -> None:
    """One brace range or list expands into the bot IDs it stands for."""
    assert expand_bot_id(expr) == expected


@pytest.mark.parametrize(
    "expr", ["vm{1..2", "vm}1{", "vm{a..3}", "vm{1..100000}", "vm{a,,b}", "{1,2}{3,4}"]
)
def test_bad_bot_id_expression_raises(expr: str) -> None:
    """Malformed, oversized or multiple brace groups are rejected."""
    with pytest.raises(ValueError, match=r"\{"):
        expand_bot_id(expr)
