"""``atrium admin clients rotate-secret``: the real CLI gives a confidential client a new secret,
and the token endpoint (client credentials) takes the old one only while the overlap lasts."""

from __future__ import annotations

import asyncio
import time

import httpx2

from atrium.auth.issuing import confidential_client
from atrium.settings import Settings
from tests.auth.flow import OAUTH, basic, register_client
from tests.cli.helpers import CliResult, run_atrium
from tests.gateway.helpers import Gateway


async def created(gateway: Gateway) -> tuple[str, str]:
    record, secret = confidential_client("billing bot", ["user"], [])
    await gateway.store.clients.add(record)
    return record.client_id, secret


async def rotate(settings: Settings, client_id: str, *options: str) -> CliResult:
    project = str(settings.project_dir)
    args = ("--project", project, "admin", "clients", "rotate-secret", client_id, *options)
    return await asyncio.to_thread(run_atrium, *args)


def printed_secret(result: CliResult) -> str:
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("client_secret:")]
    return line.split()[1]


async def token_status(
    http: httpx2.AsyncClient, gateway: Gateway, client_id: str, secret: str
) -> int:
    data = {"grant_type": "client_credentials", "resource": gateway.url("users")}
    response = await http.post(
        f"{gateway.base}{OAUTH}/token", data=data, headers=basic(client_id, secret)
    )
    return response.status_code


async def test_the_old_secret_works_until_the_overlap_ends_and_the_new_one_after(
    gateway: Gateway, http: httpx2.AsyncClient, settings: Settings
) -> None:
    client_id, old = await created(gateway)

    result = await rotate(settings, client_id, "--overlap", "1s")

    assert result.exit_code == 0, result.stderr
    new = printed_secret(result)
    assert new != old
    assert await token_status(http, gateway, client_id, new) == 200
    assert await token_status(http, gateway, client_id, old) == 200
    deadline = time.monotonic() + 2
    while await token_status(http, gateway, client_id, old) == 200:
        assert time.monotonic() < deadline, "the old secret outlived its overlap"
        await asyncio.sleep(0.1)
    assert await token_status(http, gateway, client_id, old) == 401
    assert await token_status(http, gateway, client_id, new) == 200


async def test_the_default_overlap_keeps_the_old_secret_for_a_day(
    gateway: Gateway, http: httpx2.AsyncClient, settings: Settings
) -> None:
    client_id, old = await created(gateway)

    result = await rotate(settings, client_id)

    assert result.exit_code == 0, result.stderr
    stored = await gateway.store.clients.get(client_id)
    assert stored is not None
    assert stored.previous_secret_expires_at is not None
    left = stored.previous_secret_expires_at.timestamp() - time.time()
    assert 23 * 3600 < left <= 24 * 3600
    assert await token_status(http, gateway, client_id, old) == 200


async def test_an_attacker_holding_the_old_secret_is_refused_after_overlap_0(
    gateway: Gateway, http: httpx2.AsyncClient, settings: Settings
) -> None:
    client_id, old = await created(gateway)

    result = await rotate(settings, client_id, "--overlap", "0")

    assert result.exit_code == 0, result.stderr
    assert await token_status(http, gateway, client_id, old) == 401
    assert await token_status(http, gateway, client_id, printed_secret(result)) == 200


async def test_a_second_rotation_ends_the_first_old_secret(
    gateway: Gateway, http: httpx2.AsyncClient, settings: Settings
) -> None:
    client_id, first = await created(gateway)

    assert (await rotate(settings, client_id, "--overlap", "1h")).exit_code == 0
    second = await rotate(settings, client_id, "--overlap", "1h")

    assert await token_status(http, gateway, client_id, first) == 401
    assert await token_status(http, gateway, client_id, printed_secret(second)) == 200


async def test_a_public_client_has_no_secret_to_rotate(
    gateway: Gateway, http: httpx2.AsyncClient, settings: Settings
) -> None:
    public = await register_client(http, gateway.base)

    result = await rotate(settings, public["client_id"])

    assert result.exit_code == 2
    assert "public client" in result.stderr
    assert "Traceback" not in result.stderr


async def test_an_unknown_client_or_a_bad_overlap_is_refused(
    gateway: Gateway, settings: Settings
) -> None:
    client_id, _ = await created(gateway)

    unknown = await rotate(settings, "cc_nobody")
    malformed = await rotate(settings, client_id, "--overlap", "soon")

    assert unknown.exit_code == 1
    assert (malformed.exit_code, "--overlap" in malformed.stderr) == (2, True)
    stored = await gateway.store.clients.get(client_id)
    assert stored is not None
    assert stored.previous_secret_hash is None
