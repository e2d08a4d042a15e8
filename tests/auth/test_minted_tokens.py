"""Access, ID and bootstrap tokens: signatures, expiry and rotation with the injected clock."""

from __future__ import annotations

import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from server.auth import access_tokens, bootstrap_tokens, id_tokens, minting
from server.auth.access_tokens import BadAccessToken
from server.auth.bootstrap_tokens import BadBootstrapToken
from server.auth.signed_tokens import b64url, b64url_decode
from server.clock import FakeClock
from server.errors import InvalidRequest
from server.store.sqlite import SqliteStore

ISSUER = "https://drover.example.com"
DAY = 24 * 3600.0


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    """A real SQLite store in tmp_path."""
    opened = await SqliteStore.open(tmp_path / "drover.sqlite3")
    yield opened
    await opened.close()


@pytest.fixture
def minted(store: SqliteStore, clock: FakeClock) -> minting.Minters:
    """The minters of one server over the store."""
    return minting.minters(store, clock, ISSUER)


async def _access(minted: minting.Minters) -> str:
    token, _ = await minted.access.mint(
        service_account="ci@example.com",
        account_id="task",
        bot_id="bot1",
        pool="default",
        task_id="6a1f0a2b3c4d5e0",
        run_id="6a1f0a2b3c4d5e1",
    )
    return token


async def test_access_token_round_trip(minted: minting.Minters, clock: FakeClock) -> None:
    """A minted access token starts with drt_ and parses back to what it says."""
    token = await _access(minted)
    assert token.startswith("drt_")
    claims = await minted.access.parse(token)
    assert claims is not None
    assert claims.service_account == "ci@example.com"
    assert (claims.task_id, claims.run_id, claims.bot_id) == (
        "6a1f0a2b3c4d5e0",
        "6a1f0a2b3c4d5e1",
        "bot1",
    )
    assert claims.expires_ts == clock.now() + access_tokens.LIFETIME_SECS


async def test_access_token_of_another_kind_is_not_ours(minted: minting.Minters) -> None:
    """A token without the drt_ prefix is left to other verifiers."""
    assert await minted.access.parse("drv_abc_def") is None


async def test_access_token_expires(minted: minting.Minters, clock: FakeClock) -> None:
    """An access token is refused from its expiry on."""
    token = await _access(minted)
    clock.advance(access_tokens.LIFETIME_SECS - 1)
    assert await minted.access.parse(token) is not None
    clock.advance(1)
    with pytest.raises(BadAccessToken, match="expired"):
        await minted.access.parse(token)


async def test_tampered_access_token_is_refused(minted: minting.Minters) -> None:
    """Changing the claims of a token breaks its signature; garbage is malformed."""
    token = await _access(minted)
    payload, tag = token.removeprefix("drt_").split(".")
    claims = json.loads(b64url_decode(payload))
    claims["sub"] = "admin@example.com"
    forged = "drt_" + b64url(json.dumps(claims).encode()) + "." + tag
    with pytest.raises(BadAccessToken, match="signature") as refused:
        await minted.access.parse(forged)
    assert token not in str(refused.value)
    with pytest.raises(BadAccessToken, match="malformed"):
        await minted.access.parse("drt_not-a-token")
    claims["kid"] = "0000"
    unknown = "drt_" + b64url(json.dumps(claims).encode()) + "." + tag
    with pytest.raises(BadAccessToken, match="key"):
        await minted.access.parse(unknown)


async def test_access_tokens_survive_key_rotation_until_they_expire(
    minted: minting.Minters, clock: FakeClock
) -> None:
    """A token signed just before its key retires still verifies after the next key took over."""
    await _access(minted)
    clock.advance(DAY - 60)
    late = await _access(minted)
    clock.advance(120)
    fresh = await _access(minted)
    kid = json.loads(b64url_decode(fresh[4:].split(".")[0]))["kid"]
    assert kid != json.loads(b64url_decode(late[4:].split(".")[0]))["kid"]
    assert await minted.access.parse(late) is not None


async def test_bootstrap_token_checks(minted: minting.Minters, clock: FakeClock) -> None:
    """A bootstrap token passes until it expires; other strings and kinds fail with 403."""
    token, expiry = await minted.bootstrap.mint(600)
    assert token.startswith("drb_")
    assert expiry == clock.now() + 600
    await minted.bootstrap.check(token)
    with pytest.raises(BadBootstrapToken, match="drb_"):
        await minted.bootstrap.check(await _access(minted))
    clock.advance(600)
    with pytest.raises(BadBootstrapToken, match="expired") as refused:
        await minted.bootstrap.check(token)
    assert refused.value.status == 403


async def test_bootstrap_lifetime_is_bounded(minted: minting.Minters) -> None:
    """A bootstrap token lives at least a minute and at most a week."""
    with pytest.raises(InvalidRequest, match="60"):
        await minted.bootstrap.mint(10)
    with pytest.raises(InvalidRequest):
        await minted.bootstrap.mint(bootstrap_tokens.MAX_LIFETIME_SECS + 1)


async def test_access_and_bootstrap_tokens_do_not_pass_for_each_other(
    minted: minting.Minters,
) -> None:
    """A bootstrap token's body given the access prefix is refused: keys and contexts differ."""
    token, _ = await minted.bootstrap.mint()
    with pytest.raises(BadAccessToken):
        await minted.access.parse("drt_" + token.removeprefix("drb_"))


def _verify(token: str, jwks: dict[str, Any], audience: str, now: float) -> dict[str, Any]:
    """Verifies with PyJWT, a library the server does not use, at the fake clock's `now`.

    PyJWT reads the real clock, so its own time checks are off and the same
    checks are made here against the injected one.
    """
    keys = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key,
        algorithms=["RS256"],
        audience=audience,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert claims["nbf"] <= now < claims["exp"]
    return claims


async def test_id_token_verifies_with_pyjwt(minted: minting.Minters, clock: FakeClock) -> None:
    """An ID token carries the registered and Drover claims and verifies against the JWKS."""
    token, expiry = await minted.id_tokens.mint(
        subject="ci@example.com",
        audience="https://vault.example.com",
        extra={"task_id": "t0", "run_id": "t1", "bot_id": "bot1", "pool": "default"},
    )
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    jwks = await minted.id_tokens.jwks()
    claims = _verify(token, jwks, "https://vault.example.com", clock.now())
    assert claims["sub"] == "ci@example.com"
    assert (claims["task_id"], claims["bot_id"], claims["pool"]) == ("t0", "bot1", "default")
    assert claims["iat"] == int(clock.now())
    assert claims["exp"] == expiry == int(clock.now()) + id_tokens.LIFETIME_SECS
    with pytest.raises(jwt.InvalidAudienceError):
        _verify(token, jwks, "https://other.example.com", clock.now())


async def test_id_token_keys_rotate_and_old_ones_stay_published(
    minted: minting.Minters, clock: FakeClock
) -> None:
    """After rotation the old key stays in the JWKS until its tokens expired, then leaves it."""
    old, _ = await minted.id_tokens.mint(subject="a@example.com", audience="x", extra={})
    old_kid = jwt.get_unverified_header(old)["kid"]
    clock.advance(DAY - 60)
    late, _ = await minted.id_tokens.mint(subject="a@example.com", audience="x", extra={})
    clock.advance(120)
    new, _ = await minted.id_tokens.mint(subject="a@example.com", audience="x", extra={})
    assert jwt.get_unverified_header(late)["kid"] == old_kid
    assert jwt.get_unverified_header(new)["kid"] != old_kid
    jwks = await minted.id_tokens.jwks()
    assert old_kid in [k["kid"] for k in jwks["keys"]]
    _verify(late, jwks, "x", clock.now())
    clock.advance(id_tokens.LIFETIME_SECS)
    assert old_kid not in [k["kid"] for k in (await minted.id_tokens.jwks())["keys"]]


def test_discovery_document_points_at_the_jwks(minted: minting.Minters) -> None:
    """The discovery document names the issuer, the JWKS URL and RS256."""
    doc = minted.id_tokens.discovery()
    assert doc["issuer"] == ISSUER
    assert doc["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
