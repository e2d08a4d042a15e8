"""`drover token create | list | revoke`, on the server's state directory and through the API."""

from __future__ import annotations

import asyncio
import json
import pathlib

import pytest

from server.auth.principal import Principal
from server.auth.tokens import ApiTokenVerifier
from server.clock import SystemClock
from tests.cli.conftest import Cli, run_drover
from tests.e2e.conftest import DroverServer
from tests.store.datastore_emulator import Emulator, new_namespace


def test_the_first_admin_token_is_made_on_the_servers_machine(
    drover: DroverServer, cli: Cli
) -> None:
    """--state-dir needs no token; the token is printed once, alone, and then works."""
    refused = cli("token", "create", "--name", "root", "--role", "admin")
    assert refused.returncode == 1
    assert "Auth.CreateToken needs the admin role" in refused.stderr
    run = cli("token", "create", "--state-dir", str(drover.state_dir), "--name", "root",
              "--role", "admin")  # fmt: skip
    assert run.returncode == 0, run.stderr
    token = run.stdout.strip()
    assert run.stdout == f"{token}\n"
    assert token.startswith("drv_")
    assert "shown only this once" in run.stderr
    listing = cli("token", "list", "--token", token)
    assert listing.returncode == 0, listing.stderr
    header, row = listing.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "ROLE", "CREATED", "BY", "EXPIRES", "STATUS"]
    assert row.split()[1:3] == ["root", "admin"]
    assert row.split()[-1] == "active"
    assert token not in listing.stdout


def test_tokens_made_through_the_api_can_be_revoked(drover: DroverServer, cli: Cli) -> None:
    """An admin makes a scheduler token with an expiry, lists it, and revokes it for good."""
    root = cli("token", "create", "--state-dir", str(drover.state_dir), "--name", "root",
               "--role", "admin").stdout.strip()  # fmt: skip
    made = json.loads(
        cli("token", "create", "--json", "--token", root, "--name", "ci", "--role", "scheduler",
            "--expires-in", "30d").stdout
    )  # fmt: skip
    assert made["info"]["created_by"] == "user:root"
    assert made["info"]["expires_ts"]
    ci = made["token"]
    assert cli("trigger", "--token", ci, "--wait-for-capacity", "--", "true").returncode == 0
    token_id = made["info"]["token_id"]
    revoked = cli("token", "revoke", "--token", root, token_id)
    assert revoked.stdout.startswith(f"{token_id}: revoked (")
    refused = cli("trigger", "--token", ci, "--wait-for-capacity", "--", "true")
    assert refused.returncode == 1
    assert f"The bearer token was revoked: API token {token_id}" in refused.stderr
    listing = json.loads(
        cli("token", "list", "--json", "--state-dir", str(drover.state_dir)).stdout
    )
    assert [(t["name"], bool(t.get("revoked_ts"))) for t in listing["items"]] == [
        ("root", False),
        ("ci", True),
    ]


def test_a_state_dir_without_a_server_state_is_refused(cli: Cli, tmp_path: pathlib.Path) -> None:
    """A mistyped --state-dir is an error, not a new empty database."""
    run = cli("token", "create", "--state-dir", str(tmp_path / "nope"), "--name", "a",
              "--role", "admin")  # fmt: skip
    assert run.returncode == 1
    assert "must be the server's state directory" in run.stderr
    assert not (tmp_path / "nope").exists()
    bad = cli("token", "create", "--state-dir", str(tmp_path), "--name", "a", "--role", "boss")
    assert bad.returncode == 2
    assert "invalid choice: 'boss'" in bad.stderr


@pytest.mark.datastore
def test_the_first_admin_token_of_datastore_replicas(datastore_emulator: Emulator) -> None:
    """With the store flags of `serve`, the token goes to the Datastore the replicas share."""
    namespace = new_namespace()
    flags = ["--store", "datastore", "--datastore-project", datastore_emulator.project,
             "--datastore-namespace", namespace]  # fmt: skip
    env = {"DATASTORE_EMULATOR_HOST": datastore_emulator.host}
    made = run_drover("token", "create", *flags, "--name", "root", "--role", "admin", env=env)
    assert made.returncode == 0, made.stderr

    async def verify() -> Principal | None:
        store = await datastore_emulator.open_store(namespace)
        try:
            return await ApiTokenVerifier(store, SystemClock()).verify(made.stdout.strip())
        finally:
            await store.close()

    assert asyncio.run(verify()) == Principal.user("root", "admin")
