"""Tasks through the gateway (SEP-2663, ``atrium.gateway.tasks``): a task id is the caller's
own. Another caller presenting it, the backend's own id, or an id taken to another server finds
no task, and nothing reaches the backend; a task answers only to a caller who may still call
the tool that created it; every task request is audited with that tool."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import orjson
import pytest

from atrium.servers.app import create_app as create_server_app
from atrium.servers.shutdown import GracefulServer
from atrium_everything import create_server
from tests.gateway.backend import Witness
from tests.gateway.helpers import MODERN, Gateway, serving
from tests.polling import until

EXTENSION = "io.modelcontextprotocol/tasks"
_ids = itertools.count(1)


@pytest.fixture
async def everything() -> AsyncIterator[tuple[int, Witness]]:
    """The everything server (tasks and all), every request it receives on record."""
    witness = Witness()
    app = witness.app(create_server_app(create_server(), callers=None))
    server = GracefulServer(app, host="127.0.0.1", port=0, log_level="warning", timeout_s=5)
    async with serving(server) as served:
        yield served.port, witness


@pytest.fixture
async def tasks_url(gateway: Gateway, everything: tuple[int, Witness]) -> str:
    scopes = {"slow_compute": ["reports"]}
    port = everything[0]
    await gateway.add_server("jobs", port=port, oauth={"required": True}, tools={"scopes": scopes})
    await gateway.add_server("other", port=port, oauth={"required": True})
    return gateway.url("jobs")


def bearer(gateway: Gateway, subject: str, *scopes: str, server: str = "jobs") -> dict[str, str]:
    token = gateway.token(server, *(scopes or ("tools:read", "reports")), subject=subject)
    return {"Authorization": f"Bearer {token}"}


async def rpc(
    http: httpx2.AsyncClient,
    url: str,
    method: str,
    params: dict[str, Any],
    caller: dict[str, str],
    *,
    tasks: bool = True,
) -> httpx2.Response:
    """One 2026-07-28 request whose ``_meta`` lists the tasks extension (unless not ``tasks``),
    with the routing headers SEP-2243 and SEP-2663 ask for."""
    capabilities: dict[str, Any] = {"extensions": {EXTENSION: {}}} if tasks else {}
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    }
    body = {"jsonrpc": "2.0", "id": next(_ids), "method": method}
    body["params"] = {**params, "_meta": meta}
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
        **caller,
    }
    name = params.get("taskId", params.get("name"))
    if isinstance(name, str):
        headers["Mcp-Name"] = name
    return await http.post(url, content=orjson.dumps(body), headers=headers)


def answer(response: httpx2.Response) -> dict[str, Any]:
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        message: dict[str, Any] = orjson.loads(data[-1])
        return message
    return dict(response.json())


async def create_task(
    http: httpx2.AsyncClient, url: str, caller: dict[str, str], seconds: float = 60
) -> str:
    params = {"name": "slow_compute", "arguments": {"seconds": seconds, "label": "binding"}}
    created = answer(await rpc(http, url, "tools/call", params, caller))["result"]
    assert created["resultType"] == "task", created
    task_id: str = created["taskId"]
    return task_id


def backend_task_id(witness: Witness) -> str:
    """The backend's own id of the task, as the gateway forwarded it in a ``tasks/get``."""
    for received in reversed(witness.requests):
        body = orjson.loads(bytes(received.body)) if received.body else {}
        if body.get("method") == "tasks/get":
            task_id: str = body["params"]["taskId"]
            return task_id
    raise AssertionError("no tasks/get reached the backend")


def tasks_requests(witness: Witness) -> list[dict[str, Any]]:
    bodies = [orjson.loads(bytes(r.body)) for r in witness.requests if r.body]
    return [b for b in bodies if str(b.get("method", "")).startswith("tasks/")]


async def test_another_caller_cannot_read_cancel_or_answer_a_task(
    gateway: Gateway,
    everything: tuple[int, Witness],
    http: httpx2.AsyncClient,
    tasks_url: str,
) -> None:
    _, witness = everything
    alice, bob = bearer(gateway, "alice"), bearer(gateway, "bob")
    task_id = await create_task(http, tasks_url, alice)
    mine = answer(await rpc(http, tasks_url, "tasks/get", {"taskId": task_id}, alice))
    backend_id = backend_task_id(witness)
    forwarded = len(tasks_requests(witness))

    attempts = [
        await rpc(http, tasks_url, "tasks/get", {"taskId": task_id}, bob),
        await rpc(http, tasks_url, "tasks/cancel", {"taskId": task_id}, bob),
        await rpc(http, tasks_url, "tasks/update", {"taskId": task_id, "inputResponses": {}}, bob),
        await rpc(http, tasks_url, "tasks/get", {"taskId": backend_id}, alice),
        await rpc(http, tasks_url, "tasks/get", {"taskId": backend_id}, bob),
    ]
    still = answer(await rpc(http, tasks_url, "tasks/get", {"taskId": task_id}, alice))

    assert mine["result"]["taskId"] == task_id
    assert backend_id not in task_id
    assert [answer(r)["error"]["code"] for r in attempts] == [-32602] * 5
    assert {r.status_code for r in attempts} == {400}
    assert len(tasks_requests(witness)) == forwarded + 1  # alice's last poll, nothing of bob's
    assert still["result"]["status"] == "working"
    await rpc(http, tasks_url, "tasks/cancel", {"taskId": task_id}, alice)


async def test_a_task_id_opens_on_its_own_server_only(
    gateway: Gateway, http: httpx2.AsyncClient, tasks_url: str
) -> None:
    alice = bearer(gateway, "alice")
    task_id = await create_task(http, tasks_url, alice)
    elsewhere = bearer(gateway, "alice", "tools:read", server="other")

    response = await rpc(http, gateway.url("other"), "tasks/get", {"taskId": task_id}, elsewhere)

    assert answer(response)["error"]["code"] == -32602
    await rpc(http, tasks_url, "tasks/cancel", {"taskId": task_id}, alice)


async def test_a_task_answers_only_to_a_caller_who_may_still_call_its_tool(
    gateway: Gateway, http: httpx2.AsyncClient, tasks_url: str
) -> None:
    task_id = await create_task(http, tasks_url, bearer(gateway, "alice"))
    without_reports = bearer(gateway, "alice", "tools:read")

    response = await rpc(http, tasks_url, "tasks/get", {"taskId": task_id}, without_reports)

    assert response.status_code == 403
    assert "reports" in response.headers["www-authenticate"]
    await rpc(http, tasks_url, "tasks/cancel", {"taskId": task_id}, bearer(gateway, "alice"))


async def test_a_task_runs_to_its_result_for_its_caller_and_every_request_is_audited(
    gateway: Gateway, http: httpx2.AsyncClient, tasks_url: str
) -> None:
    alice, bob = bearer(gateway, "alice"), bearer(gateway, "bob")
    task_id = await create_task(http, tasks_url, alice, seconds=0.2)

    async def completed() -> dict[str, Any] | None:
        got = answer(await rpc(http, tasks_url, "tasks/get", {"taskId": task_id}, alice))
        return got["result"] if got["result"]["status"] == "completed" else None

    result = await until(completed, what="the task to complete")
    refused = await rpc(http, tasks_url, "tasks/get", {"taskId": task_id}, bob)
    await gateway.audit(refused.headers["x-request-id"])  # stored (alice's polls may be more)
    records = await gateway.audit_of("jobs", 4)

    assert result["taskId"] == task_id
    assert result["result"]["content"][0]["text"] == "Computed binding in 0.2 s"
    polls = [r for r in records if r.method == "tasks/get"]
    assert {r.tool for r in polls if r.subject == "alice"} == {"slow_compute"}
    assert {(r.tool, r.status) for r in polls if r.subject == "bob"} == {(None, 400)}
    assert any(r.method == "tools/call" and r.tool == "slow_compute" for r in records)


@pytest.mark.parametrize("method", ["tasks/list", "tasks/result"])
async def test_task_methods_that_cannot_be_bound_are_refused(
    gateway: Gateway,
    everything: tuple[int, Witness],
    http: httpx2.AsyncClient,
    tasks_url: str,
    method: str,
) -> None:
    _, witness = everything
    params = {"taskId": "anything"} if method == "tasks/result" else {}

    response = await rpc(http, tasks_url, method, params, bearer(gateway, "alice"))

    assert answer(response)["error"]["code"] == -32601
    assert tasks_requests(witness) == []


async def test_a_task_request_without_the_extension_is_told_what_it_lacks(
    gateway: Gateway, everything: tuple[int, Witness], http: httpx2.AsyncClient, tasks_url: str
) -> None:
    alice = bearer(gateway, "alice")
    task_id = await create_task(http, tasks_url, alice)

    response = await rpc(http, tasks_url, "tasks/get", {"taskId": task_id}, alice, tasks=False)

    error = answer(response)["error"]
    assert error["code"] == -32021
    assert error["data"]["requiredCapabilities"]["extensions"] == {EXTENSION: {}}
    assert tasks_requests(everything[1]) == []
    await rpc(http, tasks_url, "tasks/cancel", {"taskId": task_id}, alice)
