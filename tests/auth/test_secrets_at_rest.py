"""Nothing in the store holds a usable secret in clear: after a whole flow, no password,
client secret, code or refresh token appears anywhere in the database, its keys are sealed,
and the master key file is readable by its owner only."""

from __future__ import annotations

import stat

import httpx2
from sqlalchemy import select

from atrium.store.keys import signing_keys
from tests.auth.conftest import PASSWORD
from tests.auth.flow import (
    Browser,
    Pkce,
    authorize_url,
    exchange_code,
    refresh,
    register_client,
    snapshot,
)
from tests.gateway.helpers import Gateway


async def test_no_secret_is_stored_in_clear(
    gateway: Gateway, browser: Browser, http: httpx2.AsyncClient
) -> None:
    client = await register_client(
        http, gateway.base, token_endpoint_auth_method="client_secret_post"
    )
    pkce = Pkce.new()
    url = authorize_url(gateway.base, client["client_id"], pkce, resource=gateway.url("users"))
    code = (await browser.consent_redirect(url, "user", PASSWORD))["code"]
    first = await exchange_code(
        http,
        gateway.base,
        client["client_id"],
        code,
        pkce.verifier,
        client_secret=client["client_secret"],
    )
    assert first.status_code == 200, first.text
    rotated = await refresh(
        http,
        gateway.base,
        client["client_id"],
        first.json()["refresh_token"],
        client_secret=client["client_secret"],
    )
    assert rotated.status_code == 200, rotated.text

    stored = repr(await snapshot(gateway.store))

    secrets = {
        "password": PASSWORD,
        "client secret": client["client_secret"],
        "code": code,
        "first refresh token": first.json()["refresh_token"],
        "second refresh token": rotated.json()["refresh_token"],
        "access token": rotated.json()["access_token"],
    }
    for what, value in secrets.items():
        assert value not in stored, f"the {what} is stored in clear"
    # The keys are in the store, sealed (test_keystore, test_session_keys), never in clear.
    async with gateway.store.engine.connect() as conn:
        sealed = repr((await conn.execute(select(signing_keys))).all())
    for key in gateway.parts.auth.session_keys.all:
        assert key.decode() not in sealed
    state = gateway.parts.auth.settings.state_dir
    for name in ("secret-key", "caller-keys.pub.json"):
        mode = stat.S_IMODE((state / name).stat().st_mode)
        assert mode & 0o022 == 0, name  # nobody but its owner writes what verifies
    assert stat.S_IMODE((state / "secret-key").stat().st_mode) == 0o600
