"""`drover serve`, `config validate` and `info` keep working through the CLI."""

from __future__ import annotations

from server.config import loader
from tests.cli.conftest import ROOT, Cli, run_drover
from tests.e2e.conftest import DroverServer


def test_config_validate_checks_a_directory() -> None:
    """`drover config validate DIR` prints the revision the server would use and exits 0."""
    run = run_drover("config", "validate", str(ROOT / "configs"))
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"OK: revision {loader.read_config(ROOT / 'configs').revision}\n"


def test_info_shows_the_running_servers_revision(drover: DroverServer, cli: Cli) -> None:
    """`info` prints the version and config revision that the API reports."""
    details = drover.call("GET", "/api/v1/server")
    out = cli("info").stdout
    assert f"config revision: {details['config_revision']}" in out
    assert f"version:         {details['server_version']}" in out


def test_version_is_printed() -> None:
    """`drover --version` names the package version."""
    from server import __version__

    assert run_drover("--version").stdout == f"drover {__version__}\n"
