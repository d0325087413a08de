"""A toolkit server trusts only the gateway: no valid caller assertion, no MCP; with one, its
tools know who calls, in both protocol eras."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.server.mcpserver import Context

from atrium import AtriumServer, CallerIdentity, current_caller
from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier, rotate_caller_keys
from tests.servers.helpers import serving
from tests.trust import assertion, vouched_client

ISSUER = "http://localhost:8080"
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami"}}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def whoami_server(calls: list[CallerIdentity]) -> AtriumServer[Any]:
    server: AtriumServer[Any] = AtriumServer("whoami", version="1.0.0")

    @server.tool()
    def whoami(ctx: Context) -> str:
        caller = current_caller(ctx)
        calls.append(caller)
        return caller.subject or "anonymous"

    return server


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    state = tmp_path / ".atrium"
    rotate_caller_keys(state, ISSUER)
    return state


def verifier(state_dir: Path) -> AssertionVerifier:
    return AssertionVerifier.load(state_dir / PUBLIC_FILE, "whoami")


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_a_tool_reads_the_caller_the_gateway_vouched_for(state_dir: Path, mode: str) -> None:
    calls: list[CallerIdentity] = []
    read = frozenset({"tools:read"})

    async with (
        serving(whoami_server(calls), verifier(state_dir)) as url,
        vouched_client(
            f"{url}/mcp", state_dir, "whoami", subject="ada", scopes=read, mode=mode
        ) as client,
    ):
        result = await client.call_tool("whoami", {})

    assert not result.is_error
    assert result.structured_content == {"result": "ada"}
    assert calls[0].subject == "ada"
    assert calls[0].scopes == {"tools:read"}
    assert calls[0].server == "whoami"


async def test_a_request_without_an_assertion_is_refused_before_any_tool_runs(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[CallerIdentity] = []

    server = whoami_server(calls)
    async with serving(server, verifier(state_dir)) as url, httpx2.AsyncClient() as http:
        refused = await http.post(f"{url}/mcp", json=CALL, headers=ACCEPT)
        health = await http.get(f"{url}/health")

    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == -32001
    assert health.status_code == 200
    assert calls == []
    assert any(r.levelno == logging.WARNING and "refused" in r.message for r in caplog.records)


def forged(tmp_path: Path) -> dict[str, str]:
    """An assertion signed with a key of another project (an attacker's own gateway)."""
    other = tmp_path / "other" / ".atrium"
    rotate_caller_keys(other, ISSUER)
    return assertion(other, "whoami")


@pytest.mark.parametrize(
    "attack", ["forged", "other server", "expired", "tampered", "twice", "alg none"]
)
async def test_an_assertion_that_does_not_prove_its_caller_is_refused(
    state_dir: Path, tmp_path: Path, attack: str
) -> None:
    good = assertion(state_dir, "whoami")
    name, value = next(iter(good.items()))
    header, payload, signature = value.split(".")
    headers: list[tuple[str, str]] = {
        "forged": list(forged(tmp_path).items()),
        "other server": list(assertion(state_dir, "elsewhere").items()),
        "expired": [(name, expired(state_dir))],
        "tampered": [(name, f"{header}.{payload[:-4]}AAAA.{signature}")],
        "twice": [(name, value), (name, value)],
        "alg none": [(name, f"eyJhbGciOiJub25lIn0.{payload}.")],
    }[attack]
    calls: list[CallerIdentity] = []

    server = whoami_server(calls)
    async with serving(server, verifier(state_dir)) as url, httpx2.AsyncClient() as http:
        response = await http.post(f"{url}/mcp", json=CALL, headers=[*ACCEPT.items(), *headers])

    assert response.status_code == 401
    assert calls == []


def expired(state_dir: Path) -> str:
    from atrium.auth.assertion import AssertionSigner

    signer = AssertionSigner.load(state_dir, ISSUER, clock=lambda: 1_000_000.0)
    return signer.sign(
        server="whoami",
        subject="ada",
        client_id="c",
        scopes=frozenset(),
        origin="external",
        request_id="r",
    )


async def test_a_key_rotation_reaches_a_running_server_without_a_restart(
    state_dir: Path,
) -> None:
    calls: list[CallerIdentity] = []

    async with serving(whoami_server(calls), verifier(state_dir)) as url:
        rotate_caller_keys(state_dir, ISSUER)
        async with vouched_client(
            f"{url}/mcp", state_dir, "whoami", subject="grace", mode="2026-07-28"
        ) as client:
            result = await client.call_tool("whoami", {})

    assert result.structured_content == {"result": "grace"}


async def test_outside_the_gateway_a_tool_learns_there_is_no_caller() -> None:
    server: AtriumServer[Any] = AtriumServer("plain", version="1")
    seen: list[str] = []

    @server.tool()
    def probe(ctx: Context) -> str:
        try:
            current_caller(ctx)
        except LookupError as exc:
            seen.append(str(exc))
        return "ok"

    async with serving(server) as url, vouched_client(f"{url}/mcp", None, "plain") as client:
        await client.call_tool("probe", {})

    assert len(seen) == 1
    assert "gateway" in seen[0]


async def test_an_assertion_is_taken_once_and_never_shown_to_tools(state_dir: Path) -> None:
    server: AtriumServer[Any] = AtriumServer("whoami", version="1")
    seen: list[str | None] = []

    @server.tool()
    def headers(ctx: Context) -> str:
        seen.append((ctx.headers or {}).get("atrium-caller-assertion"))
        return "ok"

    once = assertion(state_dir, "whoami")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "headers"}}
    modern = {
        **ACCEPT,
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "headers",
    }
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body["params"] = {"name": "headers", "arguments": {}, "_meta": meta}
    async with serving(server, verifier(state_dir)) as url, httpx2.AsyncClient() as http:
        first = await http.post(f"{url}/mcp", json=body, headers={**modern, **once})
        replayed = await http.post(f"{url}/mcp", json=body, headers={**modern, **once})

    assert first.status_code == 200, first.text
    assert replayed.status_code == 401
    assert seen == [None]
