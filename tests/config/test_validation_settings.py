"""Validation of settings.cfg: each rule refuses a bad file with the right line and field."""

from __future__ import annotations

import pathlib

import pytest

from server.config.validation import SETTINGS_RANGES, server_url_error
from tests.config.conftest import WriteFile, only_problem, problems_in

RANGE_CASES = [
    (name, value)
    for name, (low, high) in SETTINGS_RANGES.items()
    for value in (low - 1 if low > 1 else -1, high + 1)
]


@pytest.mark.parametrize(("name", "value"), RANGE_CASES, ids=[f"{n}={v}" for n, v in RANGE_CASES])
def test_settings_number_out_of_range_is_refused(
    write: WriteFile, quickstart_dir: pathlib.Path, name: str, value: int
) -> None:
    """A settings.cfg number outside its documented range is refused at its line."""
    write("settings.cfg", f"# header\n\n{name}: {value}\n")
    problem = only_problem(quickstart_dir)
    assert (problem.file, problem.line, problem.field) == ("settings.cfg", 3, name)
    low, high = SETTINGS_RANGES[name]
    assert f"{value} is out of range {low}..{high}" in problem.message


def test_settings_zero_means_default(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """Zero is accepted for every number, since it means "use the default"."""
    write("settings.cfg", "".join(f"{name}: 0\n" for name in SETTINGS_RANGES))
    assert problems_in(quickstart_dir) == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com",
        "example.com:80",
        "http://example.com/",
        "https://example.com/drover",
        "http://example.com?x=1",
        "http://example.com:99999",
        "http://user@example.com",
        "http://",
        "http://exa mple.com",
    ],
)
def test_bad_server_url_is_refused(
    write: WriteFile, quickstart_dir: pathlib.Path, url: str
) -> None:
    """server_url must be http(s)://host[:port] without a path or trailing slash."""
    write("settings.cfg", f'\nserver_url: "{url}"\n')
    problem = only_problem(quickstart_dir)
    assert (problem.file, problem.line, problem.field) == ("settings.cfg", 2, "server_url")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "https://drover.example.com", "https://[::1]:443"]
)
def test_good_server_url_is_accepted(url: str) -> None:
    """Hosts, IPv4 and bracketed IPv6 addresses with optional ports are fine."""
    assert server_url_error(url) == ""


SETTINGS_CASES = {
    "canary percent above 100": (
        "bot_deployment {\n  canary_percent: 101\n}\n",
        2,
        "bot_deployment.canary_percent",
        "101 is out of range 0..100",
    ),
    "canary percent without canary": (
        "bot_deployment {\n  canary_percent: 5\n}\n",
        2,
        "bot_deployment.canary_percent",
        "no canary archive",
    ),
    "missing archive": (
        'bot_deployment {\n  stable {\n    archive_file: "nope.zip"\n  }\n}\n',
        3,
        "bot_deployment.stable.archive_file",
        "archive 'nope.zip' does not exist",
    ),
    "canary without stable": (
        'bot_deployment {\n  canary { archive_file: "bot.zip" }\n}\n',
        2,
        "bot_deployment.canary",
        "a canary archive requires a stable archive",
    ),
    "unknown anonymous role": (
        '# who may call without a token\nanonymous_role: "everyone"\n',
        2,
        "anonymous_role",
        "unknown role 'everyone'; known: viewer, scheduler, admin",
    ),
}


@pytest.mark.parametrize(
    ("text", "line", "field", "message"), SETTINGS_CASES.values(), ids=SETTINGS_CASES
)
def test_settings_rule_refuses_with_location(
    write: WriteFile, quickstart_dir: pathlib.Path, text: str, line: int, field: str, message: str
) -> None:
    """Each settings.cfg rule refuses a bad file at the offending field's line."""
    write("bot.zip", "PK")
    write("settings.cfg", text)
    problem = only_problem(quickstart_dir)
    assert (problem.file, problem.line, problem.field) == ("settings.cfg", line, field)
    assert message in problem.message


def test_existing_archives_are_accepted(write: WriteFile, quickstart_dir: pathlib.Path) -> None:
    """Stable and canary archives that exist, with a canary share, validate."""
    write("archives/stable.zip", "PK1")
    write("archives/canary.zip", "PK2")
    write(
        "settings.cfg",
        "bot_deployment {\n"
        '  stable { archive_file: "archives/stable.zip" }\n'
        '  canary { archive_file: "archives/canary.zip" }\n'
        "  canary_percent: 10\n"
        "}\n",
    )
    assert problems_in(quickstart_dir) == []
