"""What a client gets when the backend cannot answer (issue 18 items 10 and 11).

A server the supervisor gave up on (state ``failed`` in its runtime state) will not come back by
itself: 503 with a JSON-RPC error that says so and names the command that restarts it, and no
``Retry-After``. A backend's error answer that is no JSON-RPC message (plain text, HTML,
nothing at all) reaches the client as a JSON-RPC error with the request's id, the status kept
(4xx) or the gateway's own (5xx), the backend's text in ``data``: on both eras' ``/mcp`` and on
one-shot calls. Each is audited once, as the client saw it.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from atrium.runstate import (
    RuntimeState,
    ServerState,
    ServerStatus,
    SupervisorLock,
    run_dir,
    write_state,
)
from atrium.serving import EmbeddedServer, uvicorn_config
from atrium.settings import Settings
from tests.gateway.helpers import (
    ACCEPT,
    LEGACY,
    MODERN,
    Gateway,
    call_body,
    legacy_call_body,
    modern_headers,
    serving,
)

SERVER_UNAVAILABLE = -32002
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603


def one_shot_url(gateway: Gateway, server: str) -> str:
    return f"{gateway.base}/api/v1/mcp/{server}/jsonrpc"


# -- a server the supervisor gave up on ------------------------------------------------------


@pytest.fixture
def supervisor(settings: Settings) -> Iterator[SupervisorLock]:
    """This project's supervisor lock, held as a running supervisor holds it."""
    lock = SupervisorLock(settings.state_dir)
    assert lock.acquire()
    yield lock
    lock.release()


def supervisor_says(
    settings: Settings, state: ServerState, error: str | None = None, *, ready: bool = True
) -> None:
    status = ServerStatus("down", "http", 5999, state=state, last_error=error, restarts=4)
    run_dir(settings.state_dir).mkdir(parents=True, exist_ok=True)
    write_state(settings.state_dir, RuntimeState(os.getpid(), time.time(), {"down": status}, ready))


async def test_a_server_the_supervisor_gave_up_on_gets_503_saying_how_to_restart_it(
    gateway: Gateway, settings: Settings, supervisor: SupervisorLock, http: httpx2.AsyncClient
) -> None:
    supervisor_says(settings, "failed", "exited unexpectedly with code 1; 5 crashes in 60 s")

    response = await http.post(
        gateway.url("down"), content=call_body("echo"), headers=modern_headers("tools/call", "echo")
    )
    (record,) = await gateway.audit(response.headers["x-request-id"])

    assert response.status_code == 503
    assert "retry-after" not in response.headers
    body = orjson.loads(response.content)
    assert body["id"] == 1
    error = body["error"]
    assert error["code"] == SERVER_UNAVAILABLE
    assert error["data"] == {
        "reason": "server_down",
        "command": "atrium infra services restart down",
    }
    assert "atrium infra services restart down" in error["message"]
    assert "5 crashes in 60 s" in error["message"]
    assert (record.status, record.error) == (503, error["message"])


async def test_a_one_shot_call_to_a_failed_server_gets_the_same_answer(
    gateway: Gateway, settings: Settings, supervisor: SupervisorLock, http: httpx2.AsyncClient
) -> None:
    supervisor_says(settings, "failed", "its health check never passed")

    response = await http.post(one_shot_url(gateway, "down"), content=call_body("echo"))

    assert response.status_code == 503
    assert "retry-after" not in response.headers
    error = orjson.loads(response.content)["error"]
    assert error["data"]["command"] == "atrium infra services restart down"


async def test_a_server_an_operator_stopped_names_the_command_that_starts_it(
    gateway: Gateway, settings: Settings, supervisor: SupervisorLock, http: httpx2.AsyncClient
) -> None:
    supervisor_says(settings, "stopped")

    response = await http.post(
        gateway.url("down"), content=call_body("echo"), headers=modern_headers("tools/call", "echo")
    )

    assert response.status_code == 503
    assert "retry-after" not in response.headers
    command = orjson.loads(response.content)["error"]["data"]["command"]
    assert command == "atrium infra services start down"


@pytest.mark.parametrize("state", ["backoff", "starting", "running"])
async def test_a_server_coming_back_by_itself_is_still_worth_a_retry(
    gateway: Gateway,
    settings: Settings,
    supervisor: SupervisorLock,
    http: httpx2.AsyncClient,
    state: ServerState,
) -> None:
    supervisor_says(settings, state, "exited unexpectedly with code 1")

    response = await http.post(
        gateway.url("down"), content=call_body("echo"), headers=modern_headers("tools/call", "echo")
    )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert orjson.loads(response.content)["error"]["code"] == SERVER_UNAVAILABLE


async def test_a_state_file_left_by_a_dead_supervisor_is_not_believed(
    gateway: Gateway, settings: Settings, http: httpx2.AsyncClient
) -> None:
    supervisor_says(settings, "failed", "long ago")  # no one holds the lock

    response = await http.post(
        gateway.url("down"), content=call_body("echo"), headers=modern_headers("tools/call", "echo")
    )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"


# -- backend errors that are no JSON-RPC message ---------------------------------------------


@dataclass
class Plain:
    """A backend that answers JSON-RPC but for the methods in ``refusals``, which it answers
    with a bare HTTP error: (status, content type, body)."""

    refusals: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    port: int = 0

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/mcp", self.endpoint, methods=["POST"])])

    async def endpoint(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        method = body.get("method")
        if method in self.refusals:
            status, content_type, text = self.refusals[method]
            return Response(text, status_code=status, headers={"content-type": content_type})
        if "id" not in body:
            return Response(status_code=202)
        return JSONResponse({"jsonrpc": "2.0", "id": body["id"], "result": _result(method)})


def _result(method: str) -> dict[str, Any]:
    if method == "server/discover":
        return {"supportedVersions": [MODERN], "capabilities": {}, "serverInfo": {"name": "p"}}
    if method == "initialize":
        return {"protocolVersion": LEGACY, "capabilities": {}, "serverInfo": {"name": "p"}}
    return {"content": [{"type": "text", "text": "fine"}]}


@pytest.fixture
async def plain(gateway: Gateway) -> AsyncIterator[Plain]:
    backend = Plain()
    server = EmbeddedServer(uvicorn_config(backend.app(), timeout_s=1, lifespan="off"))
    async with serving(server) as served:
        backend.port = served.port
        await gateway.add_server("plain", port=served.port)
        yield backend


NOT_ACCEPTABLE = (406, "text/plain", b"Not Acceptable: Client must accept text/event-stream")


def the_error(response: httpx2.Response, id: Any) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    body = orjson.loads(response.content)
    assert body["jsonrpc"] == "2.0"
    assert body["id"] == id
    error = body["error"]
    assert isinstance(error, dict)
    return error


@pytest.mark.parametrize(
    ("refusal", "status", "code"),
    [
        (NOT_ACCEPTABLE, 406, INVALID_REQUEST),
        ((400, "text/plain", b"Invalid Content-Type header"), 400, INVALID_REQUEST),
        ((415, "text/html", b"<h1>Unsupported Media Type</h1>"), 415, INVALID_REQUEST),
        ((500, "text/plain", b""), 502, INTERNAL_ERROR),
        ((503, "text/plain", b"overloaded"), 503, INTERNAL_ERROR),
        ((404, "application/json", b'{"detail": "Not Found"}'), 404, INVALID_REQUEST),
    ],
)
async def test_a_bare_backend_error_to_a_2026_call_becomes_a_json_rpc_error(
    gateway: Gateway,
    plain: Plain,
    http: httpx2.AsyncClient,
    refusal: tuple[int, str, bytes],
    status: int,
    code: int,
) -> None:
    plain.refusals["tools/call"] = refusal

    response = await http.post(
        gateway.url("plain"),
        content=call_body("echo", id=9),
        headers=modern_headers("tools/call", "echo"),
    )
    (record,) = await gateway.audit(response.headers["x-request-id"])

    assert response.status_code == status
    error = the_error(response, 9)
    assert error["code"] == code
    assert error["data"] == {"status": refusal[0], "body": refusal[2].decode()}
    assert f"HTTP {refusal[0]}" in error["message"]
    assert (record.status, record.error) == (status, error["message"])


async def test_a_bare_backend_error_to_an_initialize_era_request_becomes_a_json_rpc_error(
    gateway: Gateway, plain: Plain, http: httpx2.AsyncClient
) -> None:
    plain.refusals["initialize"] = NOT_ACCEPTABLE
    initialize = {
        "jsonrpc": "2.0",
        "id": "init-1",
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }

    response = await http.post(gateway.url("plain"), json=initialize, headers={"Accept": ACCEPT})
    (record,) = await gateway.audit(response.headers["x-request-id"])

    assert response.status_code == 406
    error = the_error(response, "init-1")
    assert error["data"]["body"] == NOT_ACCEPTABLE[2].decode()
    assert (record.method, record.status) == ("initialize", 406)


async def test_a_long_backend_error_is_cut_in_data(
    gateway: Gateway, plain: Plain, http: httpx2.AsyncClient
) -> None:
    plain.refusals["tools/call"] = (500, "text/html", b"<pre>" + b"x" * 100_000 + b"</pre>")

    response = await http.post(
        gateway.url("plain"),
        content=call_body("echo"),
        headers=modern_headers("tools/call", "echo"),
    )

    assert response.status_code == 502
    error = the_error(response, 1)
    assert len(error["data"]["body"]) <= 300
    assert error["data"]["truncated"] is True
    assert len(error["message"]) < 300


async def test_a_backend_json_rpc_error_is_relayed_as_it_came(
    gateway: Gateway, plain: Plain, http: httpx2.AsyncClient
) -> None:
    own = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "no such tool"}}
    plain.refusals["tools/call"] = (400, "application/json", orjson.dumps(own))

    response = await http.post(
        gateway.url("plain"),
        content=call_body("echo"),
        headers=modern_headers("tools/call", "echo"),
    )

    assert response.status_code == 400
    assert orjson.loads(response.content) == own


@pytest.mark.parametrize("era", ["modern", "legacy"])
async def test_a_bare_backend_error_to_a_one_shot_call_becomes_a_json_rpc_error(
    gateway: Gateway, plain: Plain, http: httpx2.AsyncClient, era: str
) -> None:
    if era == "legacy":
        plain.refusals["server/discover"] = (404, "text/plain", b"Not Found")
    plain.refusals["tools/call"] = (415, "text/plain", b"Invalid Content-Type")
    jsonrpc_url = one_shot_url(gateway, "plain")

    response = await http.post(jsonrpc_url, content=legacy_call_body("echo", id=3))
    (record,) = await gateway.audit(response.headers["x-request-id"])

    assert response.status_code == 415
    error = the_error(response, 3)
    assert error["code"] == INVALID_REQUEST
    assert error["data"] == {"status": 415, "body": "Invalid Content-Type"}
    assert (record.status, record.error) == (415, error["message"])


async def test_a_bare_backend_error_inside_a_one_shot_batch_answers_its_own_message(
    gateway: Gateway, plain: Plain, http: httpx2.AsyncClient
) -> None:
    plain.refusals["tools/call"] = (500, "text/plain", b"")
    batch = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {}},
        },
        {"jsonrpc": "2.0", "id": 2, "method": "ping"},
    ]
    jsonrpc_url = one_shot_url(gateway, "plain")

    response = await http.post(jsonrpc_url, json=batch)
    records = await gateway.audit(response.headers["x-request-id"], count=2)

    assert response.status_code == 200
    first, second = orjson.loads(response.content)
    assert first["error"]["code"] == INTERNAL_ERROR
    assert first["error"]["data"] == {"status": 500, "body": ""}
    assert second["result"] == {"content": [{"type": "text", "text": "fine"}]}
    # The client got HTTP 200, and a JSON-RPC error for one message: so say the records.
    outcomes = {(r.outcome, r.error) for r in records}
    assert outcomes == {("jsonrpc_error", first["error"]["message"]), ("ok", None)}
