"""Rate limits and DPoP replay in Redis: one budget across gateway processes, and what the
limiter does while Redis is down (by default signed-in callers pass uncounted, anonymous ones
get 503)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest

from atrium.auth.server import AuthorizationServer
from atrium.client.dpop import generate_key, make_proof
from atrium.gateway.ratelimit import RATE_LIMITED
from atrium.gateway.redis_client import connect
from atrium.settings import Settings, load_settings
from atrium.store import Store
from tests.gateway.conftest import Backend
from tests.gateway.helpers import call_body, modern_headers, server_record
from tests.gateway.test_ratelimit import call, limited_gateway
from tests.polling import until
from tests.processes import free_port

REPO = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0


def redis_yaml(url: str, prefix: str = "atrium") -> str:
    return f"redis:\n  url: {url}\n  key_prefix: {prefix}\n"


def down_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there


async def prepare_project(settings: Settings, backend: Backend, **rates: str) -> str:
    """Store a server per ``rates`` entry and make the signing keys (before any process starts,
    so that they share them); an access token of alice's for the server ``limited``."""
    async with await Store.open(settings) as store:
        records = [
            server_record(name, {"port": backend.port, "rate_limit": rate})
            for name, rate in rates.items()
        ]
        await store.servers.save(records)
        auth = await AuthorizationServer.open(settings, store, hosted=lambda name: None)
        try:
            audience = [auth.resources.url_for("limited")]
            token, _ = auth.tokens.mint(
                subject="alice", client_id="test-client", audience=audience, scopes=(), jkt=None
            )
        finally:
            await auth.close()
    return str(token)


@asynccontextmanager
async def gateway_processes(
    project: Path, http: httpx2.AsyncClient, count: int
) -> AsyncIterator[list[str]]:
    """``count`` gateway processes of ``project``, each on a port of its own; their base URLs."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ATRIUM_")}
    ports = [free_port() for _ in range(count)]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.gateway.gateway_process",
            str(project),
            cwd=REPO,
            env={**environ, "ATRIUM_GATEWAY_PORT": str(port)},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for port in ports
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        await asyncio.gather(*(healthy(p, http, b) for p, b in zip(processes, bases, strict=True)))
        yield bases
    finally:
        await asyncio.gather(*(stopped(process) for process in processes))


async def healthy(process: asyncio.subprocess.Process, http: httpx2.AsyncClient, base: str) -> None:
    async def answers() -> bool:
        if process.returncode is not None:
            assert process.stderr is not None
            output = (await process.stderr.read()).decode(errors="replace")
            raise AssertionError(f"the gateway at {base} exited:\n{output}")
        try:
            return (await http.get(f"{base}/health")).status_code == 200
        except httpx2.TransportError:
            return False

    await until(answers, what=f"the gateway at {base} to start", timeout_s=START_DEADLINE_S)


async def stopped(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(process.communicate(), STOP_DEADLINE_S)
    except TimeoutError:
        process.kill()
        await process.communicate()


async def call_at(http: httpx2.AsyncClient, base: str, token: str) -> int:
    headers = {**modern_headers("tools/call", "echo"), "Authorization": f"Bearer {token}"}
    body = call_body("echo", {"text": "hi"})
    response = await http.post(f"{base}/api/v1/mcp/limited/mcp", content=body, headers=headers)
    return response.status_code


@pytest.mark.redis
async def test_a_rate_limit_holds_across_two_gateway_processes_sharing_redis(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient, redis_url: str, redis_prefix: str
) -> None:
    # One public URL for both, so that a token's audience is the same on either.
    public = "gateway:\n  public_url: http://localhost:9\n"
    (tmp_path / "atrium.yaml").write_text(public + redis_yaml(redis_url, redis_prefix))
    settings = load_settings(tmp_path, environ={})
    token = await prepare_project(settings, backend, limited="3/minute")

    async with gateway_processes(tmp_path, http, 2) as (a, b):
        statuses = [await call_at(http, base, token) for base in (a, a, b, a, b)]

    assert statuses == [200, 200, 200, 429, 429]
    assert backend.witness.calls["echo"] == 3


async def test_while_redis_is_down_signed_in_callers_pass_and_anonymous_ones_get_503(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with limited_gateway(
        tmp_path, backend, redis_yaml(down_redis_url()), limited="1/minute"
    ) as gateway:
        alice = gateway.token("limited", subject="alice")
        signed_in = [await call(http, gateway, "limited", token=alice) for _ in range(2)]
        anonymous = await call(http, gateway, "limited")

    assert [response.status_code for response in signed_in] == [200, 200]  # not counted
    assert anonymous.status_code == 503, anonymous.text
    assert anonymous.headers["retry-after"] == "5"
    assert anonymous.json()["error"]["code"] == RATE_LIMITED
    assert backend.witness.calls["echo"] == 2


async def test_the_fail_modes_while_redis_is_down_are_configurable(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    modes = "ratelimit:\n  on_redis_error: {authenticated: closed, anonymous: open}\n"
    settings = modes + redis_yaml(down_redis_url())
    async with limited_gateway(tmp_path, backend, settings, limited="1/minute") as gateway:
        alice = gateway.token("limited", subject="alice")
        signed_in = await call(http, gateway, "limited", token=alice)
        anonymous = await call(http, gateway, "limited")

    assert (signed_in.status_code, anonymous.status_code) == (503, 200)


async def test_a_server_without_a_limit_never_waits_on_redis(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with limited_gateway(tmp_path, backend, redis_yaml(down_redis_url())) as gateway:
        response = await call(http, gateway, "tools")  # anonymous: would fail closed

    assert response.status_code == 200


@pytest.mark.redis
async def test_a_gateway_with_redis_spends_dpop_proofs_there(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient, redis_url: str, redis_prefix: str
) -> None:
    async with limited_gateway(tmp_path, backend, redis_yaml(redis_url, redis_prefix)) as gateway:
        key = generate_key()
        token = gateway.token("tools", jkt=key.thumbprint())
        url = gateway.url("tools")
        headers = {
            **modern_headers("tools/call", "echo"),
            "Authorization": f"DPoP {token}",
            "DPoP": make_proof(key, method="POST", url=url, access_token=token),
        }
        body = call_body("echo", {"text": "once"})
        first = await http.post(url, content=body, headers=headers)
        replayed = await http.post(url, content=body, headers=headers)

    client = connect(redis_url, timeout_s=2)
    try:
        spent = [key async for key in client.scan_iter(match=f"{redis_prefix}:dpop:*")]
    finally:
        await client.aclose()
    assert (first.status_code, replayed.status_code) == (200, 401)
    assert len(spent) == 1
