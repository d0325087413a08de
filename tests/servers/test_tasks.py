"""Long tools as tasks (``atrium.servers.tasks``, SEP-2663), spoken to over HTTP in 2026-07-28:
a tool that detaches answers with a task handle, and its result, error or questions then
arrive through ``tasks/get``; ``tasks/update`` and ``tasks/cancel`` reach it; a task belongs
to the caller the gateway vouched for when it was created."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from mcp.types import ElicitRequest, ElicitRequestFormParams

from atrium.auth.assertion import PUBLIC_FILE, AssertionVerifier, rotate_caller_keys
from atrium.servers.tasks import EXTENSION, Tasks
from atrium.servers.toolkit import AtriumServer
from tests.polling import until
from tests.servers.helpers import serving
from tests.trust import assertion

MODERN = "2026-07-28"
_ids = itertools.count(1)


@dataclass
class Seen:
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: list[str] = field(default_factory=list)


def ask(message: str) -> ElicitRequest:
    schema = {"type": "object", "properties": {"value": {"type": "string"}}}
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def task_server(seen: Seen, tasks: Tasks) -> AtriumServer[Any]:
    server: AtriumServer[Any] = AtriumServer("tasker", version="1.0.0", extensions=[tasks])

    @tasks.tool(server)
    async def wait_for_gate(quick: bool = False) -> str:
        if quick:
            return "answered at once"
        if not await tasks.detach("waiting for the gate"):
            return "ran without a task"
        try:
            await seen.gate.wait()
        except asyncio.CancelledError:
            seen.cancelled.append("wait_for_gate")
            raise
        return "the gate opened"

    @tasks.tool(server, support="required")
    async def two_questions() -> str:
        await tasks.detach()
        answers = await tasks.ask({"a": ask("A?"), "b": ask("B?")})
        return " ".join(answers[key]["content"]["value"] for key in ("a", "b"))

    @tasks.tool(server)
    async def asks_one_key_twice() -> str:
        await tasks.detach()
        await tasks.ask({"k": ask("First?")})
        await tasks.ask({"k": ask("Again?")})
        return "asked twice"

    return server


def meta(*, tasks: bool = True) -> dict[str, Any]:
    extensions: dict[str, Any] = {"extensions": {EXTENSION: {}}} if tasks else {}
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": extensions,
    }


async def rpc(
    http: httpx2.AsyncClient,
    url: str,
    method: str,
    params: dict[str, Any],
    *,
    tasks: bool = True,
    caller: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One 2026-07-28 request, headers as SEP-2243 and SEP-2663 want them; its response."""
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
        **(caller or {}),
    }
    name = params.get("taskId", params.get("name"))
    if isinstance(name, str):
        headers["Mcp-Name"] = name
    body = {"jsonrpc": "2.0", "id": next(_ids), "method": method}
    body["params"] = {**params, "_meta": meta(tasks=tasks)}
    response = await http.post(f"{url}/mcp", content=orjson.dumps(body), headers=headers)
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        message: dict[str, Any] = orjson.loads(data[-1])
        return message
    return dict(response.json())


async def call(http: httpx2.AsyncClient, url: str, tool: str, **arguments: Any) -> dict[str, Any]:
    result: dict[str, Any] = (
        await rpc(http, url, "tools/call", {"name": tool, "arguments": arguments})
    )["result"]
    return result


async def settled(http: httpx2.AsyncClient, url: str, task_id: str, status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        task = (await rpc(http, url, "tasks/get", {"taskId": task_id}))["result"]
        return task if task["status"] == status else None

    found: dict[str, Any] = await until(reached, what=f"the task to be {status}")
    return found


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()
    async with serving(task_server(seen, Tasks(ttl_ms=60_000, poll_interval_ms=100))) as url:
        yield url, seen


async def test_a_tool_that_detaches_answers_with_a_handle_and_later_with_its_result(
    served: tuple[str, Seen],
) -> None:
    url, seen = served
    async with httpx2.AsyncClient(timeout=10) as http:
        created = await call(http, url, "wait_for_gate")
        working = (await rpc(http, url, "tasks/get", {"taskId": created["taskId"]}))["result"]
        seen.gate.set()
        completed = await settled(http, url, created["taskId"], "completed")

    assert created["resultType"] == "task"
    assert (created["status"], created["ttlMs"], created["pollIntervalMs"]) == (
        "working",
        60_000,
        100,
    )
    assert "result" not in created
    assert "task" not in created
    assert (working["status"], working["statusMessage"]) == ("working", "waiting for the gate")
    assert working["resultType"] == "complete"
    assert completed["result"]["content"][0]["text"] == "the gate opened"
    assert completed["createdAt"] == created["createdAt"]
    assert "requestState" not in completed


async def test_a_tool_that_ends_before_detaching_answers_as_any_tool(
    served: tuple[str, Seen],
) -> None:
    url, _ = served
    async with httpx2.AsyncClient(timeout=10) as http:
        result = await call(http, url, "wait_for_gate", quick=True)

    assert result["resultType"] == "complete"
    assert "taskId" not in result
    assert result["content"][0]["text"] == "answered at once"


async def test_a_caller_without_the_extension_gets_results_or_is_told_what_it_lacks(
    served: tuple[str, Seen],
) -> None:
    url, _ = served
    async with httpx2.AsyncClient(timeout=10) as http:
        optional = await rpc(
            http, url, "tools/call", {"name": "wait_for_gate", "arguments": {}}, tasks=False
        )
        required = await rpc(
            http, url, "tools/call", {"name": "two_questions", "arguments": {}}, tasks=False
        )
        get = await rpc(http, url, "tasks/get", {"taskId": "whatever"}, tasks=False)

    assert optional["result"]["content"][0]["text"] == "ran without a task"
    assert required["error"]["code"] == -32021
    assert required["error"]["data"]["requiredCapabilities"]["extensions"] == {EXTENSION: {}}
    assert get["error"]["code"] == -32021


async def test_questions_may_be_answered_one_update_at_a_time(served: tuple[str, Seen]) -> None:
    url, _ = served
    async with httpx2.AsyncClient(timeout=10) as http:
        task_id = (await call(http, url, "two_questions"))["taskId"]
        asking = await settled(http, url, task_id, "input_required")
        first = await rpc(
            http,
            url,
            "tasks/update",
            {"taskId": task_id, "inputResponses": {"a": accept("x"), "never-asked": accept("?")}},
        )
        after_first = (await rpc(http, url, "tasks/get", {"taskId": task_id}))["result"]
        await rpc(
            http, url, "tasks/update", {"taskId": task_id, "inputResponses": {"b": accept("y")}}
        )
        completed = await settled(http, url, task_id, "completed")

    assert set(asking["inputRequests"]) == {"a", "b"}
    assert asking["inputRequests"]["a"]["method"] == "elicitation/create"
    assert set(first["result"]) <= {"resultType", "_meta"}
    assert after_first["status"] == "input_required"
    assert set(after_first["inputRequests"]) == {"b"}
    assert completed["result"]["content"][0]["text"] == "x y"


async def test_a_question_key_serves_once_in_a_tasks_life(served: tuple[str, Seen]) -> None:
    url, _ = served
    async with httpx2.AsyncClient(timeout=10) as http:
        task_id = (await call(http, url, "asks_one_key_twice"))["taskId"]
        await settled(http, url, task_id, "input_required")
        await rpc(
            http, url, "tasks/update", {"taskId": task_id, "inputResponses": {"k": accept("1")}}
        )
        completed = await settled(http, url, task_id, "completed")

    # The tool's mistake (ValueError) ends it as a failed tool, logged with its traceback.
    assert completed["result"]["isError"] is True
    assert "asked twice" not in completed["result"]["content"][0]["text"]


async def test_cancel_stops_the_tool_and_is_acknowledged_again_once_it_stopped(
    served: tuple[str, Seen],
) -> None:
    url, seen = served
    async with httpx2.AsyncClient(timeout=10) as http:
        task_id = (await call(http, url, "wait_for_gate"))["taskId"]
        first = await rpc(http, url, "tasks/cancel", {"taskId": task_id})
        cancelled = await settled(http, url, task_id, "cancelled")
        again = await rpc(http, url, "tasks/cancel", {"taskId": task_id})

    assert seen.cancelled == ["wait_for_gate"]
    assert first["result"]["resultType"] == again["result"]["resultType"] == "complete"
    assert "taskId" not in first["result"]
    assert "result" not in cancelled


async def test_an_id_never_issued_is_invalid_params(served: tuple[str, Seen]) -> None:
    url, _ = served
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await rpc(http, url, "tasks/get", {"taskId": "not-a-task"})

    assert response["error"]["code"] == -32602


async def test_past_max_tasks_a_call_runs_without_a_task() -> None:
    seen = Seen()
    async with (
        serving(task_server(seen, Tasks(max_tasks=1))) as url,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        first = await call(http, url, "wait_for_gate")
        second = await call(http, url, "wait_for_gate")

    assert first["resultType"] == "task"
    assert second["content"][0]["text"] == "ran without a task"


async def test_a_task_belongs_to_the_caller_who_created_it(tmp_path: Path) -> None:
    state = tmp_path / ".atrium"
    rotate_caller_keys(state, "http://localhost:8080")
    verifier = AssertionVerifier.load(state / PUBLIC_FILE, "tasker")
    seen = Seen()

    def caller(subject: str) -> dict[str, str]:
        return assertion(state, "tasker", subject=subject)

    async with (
        serving(task_server(seen, Tasks()), verifier) as url,
        httpx2.AsyncClient(timeout=10) as http,
    ):
        created = await rpc(
            http,
            url,
            "tools/call",
            {"name": "wait_for_gate", "arguments": {}},
            caller=caller("ada"),
        )
        task_id = created["result"]["taskId"]
        by_bob = await rpc(http, url, "tasks/get", {"taskId": task_id}, caller=caller("bob"))
        bob_cancels = await rpc(
            http, url, "tasks/cancel", {"taskId": task_id}, caller=caller("bob")
        )
        by_ada = await rpc(http, url, "tasks/get", {"taskId": task_id}, caller=caller("ada"))

    assert by_bob["error"]["code"] == bob_cancels["error"]["code"] == -32602
    assert by_ada["result"]["status"] == "working"
    assert seen.cancelled == []


def accept(value: str) -> dict[str, Any]:
    return {"action": "accept", "content": {"value": value}}
