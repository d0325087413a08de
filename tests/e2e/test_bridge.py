"""`atrium bridge` as the stdio server of the official Python client, against a gateway whose
`atrium` server requires OAuth and DPoP: the first run signs in through the browser (played by
`sign_in.py` as $BROWSER), later runs reuse the stored DPoP-bound tokens and refresh them
without a browser."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.e2e.instance import Instance, started_instance

SIGN_IN = Path(__file__).with_name("sign_in.py")


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    with started_instance(tmp_path_factory.mktemp("bridge") / "project", dpop="required") as up:
        yield up


def bridge(instance: Instance, credentials: Path, browser: str) -> StdioServerParameters:
    env = {
        **instance.env,
        "BROWSER": browser,
        "ATRIUM_TEST_USER": "admin",
        "ATRIUM_TEST_PASSWORD": instance.password,
    }
    args = ["-m", "atrium", "bridge", instance.url("atrium"), "--credentials", str(credentials)]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


async def list_and_call(parameters: StdioServerParameters) -> tuple[set[str], str]:
    async with Client(stdio_client(parameters)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("list_playbooks", {})
    assert not result.is_error, result
    return tools, json.dumps(result.model_dump(mode="json"))


async def test_the_bridge_signs_in_once_and_serves_the_remote_tools_over_stdio(
    instance: Instance, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    signing_in = bridge(instance, credentials, f"{sys.executable} {SIGN_IN} %s")

    tools, result = await list_and_call(signing_in)

    assert "list_playbooks" in tools
    assert "add-a-stdio-server" in result
    (stored,) = credentials.iterdir()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    saved = json.loads(stored.read_text())
    assert saved["refresh_token"]
    assert "d" in saved["dpop_key"]  # the private key stays here, never sent
    stolen = httpx2.post(
        instance.url("atrium"),
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {saved['access_token']}"},
        timeout=10,
    )
    assert stolen.status_code == 401  # a copied token is useless without the key
    no_browser = bridge(instance, credentials, "false %s")  # a sign-in now would fail
    again, _ = await list_and_call(no_browser)
    assert again == tools
    stored.write_text(json.dumps({**saved, "access_token": "no-longer-valid"}))
    refreshed, _ = await list_and_call(no_browser)  # a 401, then the refresh token, no browser
    assert refreshed == tools
    rotated = json.loads(stored.read_text())
    assert rotated["refresh_token"] != saved["refresh_token"]
    assert rotated["access_token"] != "no-longer-valid"
