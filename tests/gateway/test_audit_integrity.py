"""The audit trail and the metrics tell the truth, whatever a caller sends to make them lie.

Each test is an attack through the real gateway: a message shaped like a request and a
response at once, a token that breaks the verifier, a backend that answers nothing, batches of
thousands of calls, made-up tool names by the hundred, and names that would act on the
terminal of whoever reads the trail.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from atrium.gateway.jsonrpc import MAX_TOOL_NAME
from atrium.gateway.metrics import MAX_TOOL_LABELS, Metrics
from atrium.servers.shutdown import GracefulServer
from atrium.settings import Settings, load_settings
from atrium.store.audit import AuditEvent, AuditRecord
from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    ACCEPT,
    JSON,
    META,
    Gateway,
    call_body,
    call_modern,
    list_body,
    modern_headers,
    serving,
)

MAX_BATCH = 10
HEADERS = {"Accept": ACCEPT, "Content-Type": JSON}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The gateway tests' settings, with room in the body for batches of thousands."""
    yaml = f"gateway:\n  max_body_bytes: {1024 * 1024}\n  max_batch: {MAX_BATCH}\n"
    (tmp_path / "atrium.yaml").write_text(yaml)
    return load_settings(tmp_path, environ={})


def call(tool: str, id: Any = 1, **extra: Any) -> dict[str, Any]:
    params = {"name": tool, "arguments": {"text": "hi"}, "_meta": META}
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params, **extra}


async def post(
    http: httpx2.AsyncClient, url: str, document: Any, **headers: str
) -> httpx2.Response:
    return await http.post(url, content=orjson.dumps(document), headers={**HEADERS, **headers})


async def settled(gateway: Gateway, http: httpx2.AsyncClient, server: str) -> list[AuditRecord]:
    """Every record of ``server`` so far, newest first, once all are stored: records are
    written in order, so once a marker call's record is there, so is every earlier one."""
    marker = await call_modern(http, gateway.url(server), "echo", {"text": "marker"})
    marker_id = marker.headers["x-request-id"]
    await gateway.audit(marker_id)
    records = await gateway.store.audit.list_recent(1000, server=server)
    return [record for record in records if record.request_id != marker_id]


async def locked(gateway: Gateway, backend: Backend) -> str:
    """A server that wants a token: every call without one is refused with 401."""
    await gateway.add_server("locked", port=backend.port, oauth={"required": True})
    return gateway.url("locked")


# -- JSON-RPC: a request is a request, a response a response (JSON-RPC 2.0 §4, §5) -----------


@pytest.mark.parametrize(
    "forged",
    [
        call("delete_everything", error={"code": 0, "message": "fine"}),
        call("delete_everything", result={"content": []}),
        call("delete_everything", id=None),
        call("delete_everything", id=True),
        {"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "both"}},
    ],
    ids=["method-and-error", "method-and-result", "null-id", "boolean-id", "result-and-error"],
)
async def test_a_message_that_is_no_request_is_refused_and_never_audited_as_one_that_ran(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, forged: dict[str, Any]
) -> None:
    response = await post(http, gateway.url("tools"), forged)

    assert (response.status_code, response.json()["error"]["code"]) == (400, -32600)
    assert backend.witness.bodies_naming("delete_everything") == []
    assert backend.witness.calls["delete_everything"] == 0
    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert record.outcome != "ok"
    assert (record.status, record.tool) == (400, None)


async def test_a_forged_message_refused_for_its_token_is_not_ok_either(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = await locked(gateway, backend)

    response = await post(http, url, call("delete_everything", error={"code": 0, "message": ""}))

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert response.status_code == 401
    assert record.outcome != "ok"
    assert (record.status, record.tool) == (401, None)  # audited as what it is: no request


async def test_two_requests_of_a_batch_with_one_id_are_refused(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    # Answers are matched by id: "fail"'s error and "echo"'s success would share one outcome.
    response = await post(http, gateway.url("tools"), [call("fail", id=7), call("echo", id=7)])

    assert response.json()["error"]["code"] == -32600
    assert backend.witness.calls["fail"] == 0


def crashing_token() -> str:
    """A JWT whose ``kid`` is a list: the verifier looks keys up by it."""

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256', 'typ': 'at+jwt', 'kid': ['x']})}.{part({})}.AAAA"


async def test_a_token_that_breaks_the_gateway_is_audited_with_the_status_the_client_got(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    headers = {
        **modern_headers("tools/call", "echo"),
        "Authorization": f"Bearer {crashing_token()}",
    }

    response = await http.post(gateway.url("tools"), content=call_body("echo"), headers=headers)

    (record,) = await gateway.audit_of("tools")
    assert response.status_code >= 400
    assert record.outcome != "ok"
    assert record.status == response.status_code


@pytest.fixture
async def evasive_backend() -> AsyncIterator[int]:
    """A backend that answers no request: ``accept`` gets a 202, as a notification would, and
    ``elsewhere`` a success for another request than the one sent."""

    async def evade(request: Request) -> Response:
        if b"elsewhere" in await request.body():
            return JSONResponse({"jsonrpc": "2.0", "id": "someone-else", "result": {}})
        return Response(status_code=202)

    app = Starlette(routes=[Route("/mcp", evade, methods=["POST"])])
    server = GracefulServer(app, host="127.0.0.1", port=0, log_level="warning", timeout_s=5)
    async with serving(server) as served:
        yield served.port


@pytest.mark.parametrize("tool", ["accept", "elsewhere"])
async def test_a_request_the_backend_did_not_answer_is_not_ok(
    gateway: Gateway, http: httpx2.AsyncClient, evasive_backend: int, tool: str
) -> None:
    await gateway.add_server("evasive", port=evasive_backend)

    response = await call_modern(http, gateway.url("evasive"), tool, {"text": "anyone?"})

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert (record.tool, record.outcome) == (tool, "http_error")
    assert record.status == response.status_code


# -- a refused request is one record; a batch has a size ------------------------------------


async def test_thousands_of_calls_refused_for_want_of_a_token_are_one_record(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = await locked(gateway, backend)
    batch = [call("echo", id=n) for n in range(3000)]

    response = await post(http, url, batch)

    assert response.status_code == 401  # who calls is answered before what is wrong
    stored = await settled(gateway, http, "locked")
    assert [r.request_id for r in stored] == [response.headers["x-request-id"]]
    (record,) = stored
    assert (record.method, record.tool, record.status) == ("tools/call", "echo", 401)
    assert "3000" in str(record.error)
    assert backend.witness.calls["echo"] == 0


async def test_a_batch_past_max_batch_is_refused_whole_as_an_invalid_request(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    batch = [call("echo", id=n) for n in range(MAX_BATCH + 1)]

    response = await post(http, gateway.url("guarded"), batch)

    assert (response.status_code, response.json()["error"]["code"]) == (400, -32600)
    assert backend.witness.bodies_naming('"id":10') == []
    stored = await settled(gateway, http, "guarded")
    assert [(r.request_id, r.tool, r.status) for r in stored] == [
        (response.headers["x-request-id"], "echo", 400)
    ]


async def test_a_batch_of_max_batch_calls_is_forwarded(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    batch = [call("echo", id=f"call-{n}") for n in range(MAX_BATCH)]

    response = await post(http, gateway.url("tools"), batch)

    # A bare batch is a one-shot call: each message goes upstream by itself.
    assert [answer["id"] for answer in response.json()] == [f"call-{n}" for n in range(MAX_BATCH)]
    assert backend.witness.calls["echo"] == MAX_BATCH


@pytest.mark.parametrize("status", [403, 429])
async def test_a_batch_refused_for_its_rights_or_its_rate_is_one_record(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, status: int
) -> None:
    if status == 403:
        await gateway.add_server("locked", port=backend.port, oauth={"required": True})
        token = gateway.token("locked", "tools:read")  # reads; echo writes
        headers = {"Authorization": f"Bearer {token}"}
    else:
        await gateway.add_server("locked", port=backend.port, rate_limit="2/minute")
        headers = {}
    batch = [call("echo", id=n) for n in range(MAX_BATCH)]

    response = await post(http, gateway.url("locked"), batch, **headers)

    assert response.status_code == status
    stored = await settled(gateway, http, "locked")
    assert [(r.request_id, r.status) for r in stored] == [
        (response.headers["x-request-id"], status)
    ]


# -- tool names: names, not terminal commands ---------------------------------------------


ESCAPES = "\x1b[2J\x1b[1;1Hatrium  tools/call  ok  fake line\n"


@pytest.mark.parametrize(
    "name", [ESCAPES, "echo\r", "echo\u202e", "x" * (MAX_TOOL_NAME + 1), ""], ids=repr
)
async def test_a_tool_name_that_is_no_name_is_refused_and_recorded_harmless(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, name: str
) -> None:
    response = await post(http, gateway.url("tools"), call(name))

    assert (response.status_code, response.json()["error"]["code"]) == (400, -32602)
    assert backend.witness.bodies_naming('"text":"hi"') == []
    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert record.tool is not None
    assert record.tool.isprintable()
    assert len(record.tool) <= MAX_TOOL_NAME


async def test_a_refused_name_is_recorded_escaped_so_that_it_can_still_be_read(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = await locked(gateway, backend)

    response = await post(http, url, call(ESCAPES))

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert response.status_code == 401
    assert record.tool == "\\x1b[2J\\x1b[1;1Hatrium  tools/call  ok  fake line\\n"


@pytest.mark.parametrize("name", ["résumé", "github/create issue", "a" * MAX_TOOL_NAME])
async def test_names_real_servers_use_beyond_the_spec_pass_to_the_backend(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, name: str
) -> None:
    encoded = base64.b64encode(name.encode()).decode()  # 2026-07-28, "HTTP headers"
    headers = modern_headers("tools/call", f"=?base64?{encoded}?=")

    response = await post(http, gateway.url("tools"), call(name), **headers)

    assert response.status_code == 200  # the backend's own answer: no such tool
    assert len(backend.witness.bodies_naming('"text":"hi"')) == 1


async def test_a_method_name_with_escapes_is_recorded_escaped(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    message = {"jsonrpc": "2.0", "id": 1, "method": "x/\x1b]0;owned\x07", "params": {}}

    response = await post(http, gateway.url("tools"), message)

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert record.method == "x/\\x1b]0;owned\\x07"


# -- metrics: labels come from what backends listed -----------------------------------------


async def metrics_text(http: httpx2.AsyncClient, gateway: Gateway) -> str:
    response = await http.get(f"{gateway.base}/metrics")
    assert response.status_code == 200
    return response.text


def tool_labels(text: str) -> set[str]:
    return {
        sample.labels["tool"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "tool" in sample.labels
    }


async def test_made_up_tool_names_add_no_labels_and_no_bytes_to_the_metrics(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    async def attack(n: int) -> None:
        await call_modern(http, gateway.url("tools"), f"made_up_{n}", {"text": "hi"})
        forged = call(f"forged_{n}", error={"code": 0, "message": ""})
        await post(http, gateway.url("tools"), forged)

    await attack(0)  # the series every such request counts in exist from here on
    await settled(gateway, http, "tools")
    before = await metrics_text(http, gateway)
    await asyncio.gather(*(attack(n) for n in range(1, 150)))
    await settled(gateway, http, "tools")
    after = await metrics_text(http, gateway)

    assert tool_labels(after) == tool_labels(before) == {"(unknown)"}
    assert len(after) - len(before) < 200  # counts grew by digits, not by series


async def test_a_tool_the_server_listed_is_a_label(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    headers = modern_headers("tools/list")
    listed = await http.post(gateway.url("tools"), content=list_body(), headers=headers)
    assert "echo" in {tool["name"] for tool in listed.json()["result"]["tools"]}

    await call_modern(http, gateway.url("tools"), "echo", {"text": "hi"})
    await settled(gateway, http, "tools")

    assert "echo" in tool_labels(await metrics_text(http, gateway))


def test_a_server_that_lists_endless_tools_gets_a_bounded_number_of_labels() -> None:
    metrics = Metrics(lambda server: True, known_tool=lambda server, tool: True)

    for n in range(3 * MAX_TOOL_LABELS):
        event = AuditEvent(request_id=f"r{n}", server="big", method="tools/call", tool=f"t{n}")
        metrics.observe(event)

    labels = tool_labels(metrics.exposition().decode())
    assert len(labels) == MAX_TOOL_LABELS + 1
    assert "(other)" in labels
