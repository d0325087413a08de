"""One-shot calls to a server that knows only the ``initialize`` era (issue 15 §1): the npm
``@modelcontextprotocol/server-everything`` (TypeScript SDK v1, Streamable HTTP, sessions).

The gateway opens a backend session itself, one per caller, and answers the bare POST with
JSON; a session the backend forgot is opened again without running anything twice.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from tests.gateway.helpers import Gateway
from tests.polling import until, wait_until
from tests.processes import free_port

REPO = Path(__file__).resolve().parents[2]
EVERYTHING = REPO / ".cache/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
PLAIN = {"Content-Type": "application/json"}


class Everything:
    """The npm server on ``port``, started again on the same port by ``restart``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        node = shutil.which("node")
        if node is None or not EVERYTHING.exists():
            pytest.fail("node and the npm server-everything are needed: run scripts/npm-deps")
        env = {**os.environ, "PORT": str(self.port)}
        self.process = subprocess.Popen(
            [node, str(EVERYTHING), "streamableHttp"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._listening, timeout_s=30, what="server-everything to listen")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def _listening(self) -> bool:
        try:
            httpx2.get(f"http://127.0.0.1:{self.port}/mcp", timeout=1)
        except httpx2.HTTPError:
            return False
        return True


@pytest.fixture
def everything() -> Iterator[Everything]:
    server = Everything(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def legacy(gateway: Gateway, everything: Everything) -> str:
    await gateway.add_server("legacy", port=everything.port, oauth={"required": True})
    return gateway.url("legacy")


def echo(message: str, id: Any = 1) -> dict[str, Any]:
    params = {"name": "echo", "arguments": {"message": message}}
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}


async def post(
    http: httpx2.AsyncClient, url: str, body: Any, token: str | None = None
) -> httpx2.Response:
    headers = {**PLAIN, **({"Authorization": f"Bearer {token}"} if token else {})}
    return await http.post(url, content=orjson.dumps(body), headers=headers)


def text_of(answer: dict[str, Any]) -> str:
    return str(answer["result"]["content"][0]["text"])


async def test_a_bare_call_to_an_initialize_era_server_is_answered_on_a_session_of_its_own(
    gateway: Gateway, legacy: str, http: httpx2.AsyncClient
) -> None:
    token = gateway.token("legacy", "tools:write")
    listed = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}

    tools = await post(http, legacy, listed, token)
    called = await post(http, legacy, echo("hello legacy", id="x"), token)

    assert tools.headers["content-type"] == "application/json"
    assert "mcp-session-id" not in tools.headers
    assert "echo" in {tool["name"] for tool in tools.json()["result"]["tools"]}
    assert (called.json()["id"], text_of(called.json())) == ("x", "Echo: hello legacy")
    records = await gateway.audit_of("legacy", 2)
    assert {(r.tool, r.outcome) for r in records} == {(None, "ok"), ("echo", "ok")}


async def test_concurrent_calls_with_one_id_on_one_backend_session_each_get_their_own_answer(
    gateway: Gateway, legacy: str, http: httpx2.AsyncClient
) -> None:
    token = gateway.token("legacy", "tools:write")

    answers = await asyncio.gather(
        *(post(http, legacy, echo(f"n{n}", id=1), token) for n in range(8))
    )
    batch = await post(http, legacy, [echo("a", id=1), echo("b", id=2)], token)

    assert [text_of(a.json()) for a in answers] == [f"Echo: n{n}" for n in range(8)]
    assert [text_of(a) for a in batch.json()] == ["Echo: a", "Echo: b"]


async def test_each_caller_gets_a_backend_session_of_their_own(
    gateway: Gateway, legacy: str, http: httpx2.AsyncClient
) -> None:
    alice = gateway.token("legacy", "tools:write", subject="alice")
    bob = gateway.token("legacy", "tools:write", subject="bob")

    await post(http, legacy, echo("a"), alice)
    await post(http, legacy, echo("b"), bob)
    await post(http, legacy, echo("a again"), alice)

    pool = gateway.parts.proxy.oneshot.pool
    assert sorted(key.subject or "" for key in pool._sessions) == ["alice", "bob"]


async def test_a_session_the_backend_forgot_is_opened_again(
    gateway: Gateway, legacy: str, everything: Everything, http: httpx2.AsyncClient
) -> None:
    token = gateway.token("legacy", "tools:write")
    assert text_of((await post(http, legacy, echo("before"), token)).json()) == "Echo: before"

    everything.stop()  # its sessions die with it
    everything.start()
    after = await post(http, legacy, echo("after"), token)

    assert after.status_code == 200, after.text
    assert text_of(after.json()) == "Echo: after"


async def test_a_backend_that_is_down_is_a_clear_503(
    gateway: Gateway, legacy: str, everything: Everything, http: httpx2.AsyncClient
) -> None:
    token = gateway.token("legacy", "tools:write")
    everything.stop()
    gateway.parts.proxy.oneshot.forget()

    response = await post(http, legacy, echo("nobody"), token)

    assert response.status_code == 503
    assert "legacy" in response.json()["error"]["message"]
    (record,) = await until(
        lambda: gateway.store.audit.list_recent(5, server="legacy"), what="the audit record"
    )
    assert record.status == 503
