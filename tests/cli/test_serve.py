"""`drover serve`, `config validate` and `info` keep working through the CLI."""

from __future__ import annotations

import pathlib

from server.config import loader
from tests.cli.conftest import ROOT, Cli, free_port, run_drover
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


def test_datastore_flags_need_the_datastore_store() -> None:
    """`serve --datastore-project` without `--store datastore` is a usage error that says so."""
    run = run_drover("serve", "--datastore-project", "p1", "--port", str(free_port()))
    assert run.returncode == 2
    assert "needs the datastore store" in run.stderr


def test_datastore_without_credentials_fails_with_a_message(tmp_path: pathlib.Path) -> None:
    """Without credentials or an emulator, `serve --store datastore` exits 1 saying what to give."""
    run = run_drover(
        "serve",
        "--store",
        "datastore",
        "--datastore-project",
        "p1",
        "--port",
        str(free_port()),
        "--state-dir",
        str(tmp_path / "state"),
        # No credentials anywhere: no file, no gcloud login, no metadata server.
        env={"HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path), "NO_GCE_CHECK": "true"},
        unset=["GOOGLE_APPLICATION_CREDENTIALS", "DATASTORE_EMULATOR_HOST"],
    )
    assert run.returncode == 1, run.stderr
    assert "drover: The store cannot be opened: datastore (project p1)" in run.stderr
    assert "application-default login" in run.stderr
    assert "Traceback" not in run.stderr


async def test_the_started_heap_is_frozen_after_its_garbage_is_collected() -> None:
    """freeze_startup_heap collects the start's cycles, then hides what is left from the GC."""
    import gc
    import weakref

    from aiohttp import web

    from server.cli.serve import freeze_startup_heap

    class Node:
        peer: Node | None = None

    kept, dropped = Node(), Node()
    dropped.peer = dropped  # a cycle: only the collector frees it
    gone = weakref.ref(dropped)
    del dropped
    try:
        await freeze_startup_heap(web.Application())
        assert gone() is None, "the start's garbage was frozen instead of collected"
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects()), "a started object is still tracked"
    finally:
        gc.unfreeze()
