"""Bad input against the audit promise (issue 18, "Faults and bad input" 1, 2, 3, 5 and 7): every
request the gateway answers has exactly one audit record, whatever its body, and no route reads
a body past the gateway's limit.

Each test sends what the probe of issue 18 sent, through the real gateway to the real test
backend, and looks the answer up in the audit trail by its ``x-request-id``. A passing test
documents a defence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import orjson
import pytest

from atrium.gateway.errors import INVALID_REQUEST, PARSE_ERROR
from atrium.gateway.exchange import Exchange
from atrium.gateway.jsonrpc import MAX_DEPTH, Call, Inbound
from atrium.store.audit import AuditRecord
from tests.gateway.chunked_client import post_in_chunks
from tests.gateway.conftest import MAX_BODY_BYTES, Backend
from tests.gateway.helpers import ACCEPT, JSON, META, Gateway, modern_headers
from tests.polling import until

PLAIN = {"Content-Type": JSON}  # a one-shot POST: the gateway answers it itself
STREAMED = {"Accept": ACCEPT, "Content-Type": JSON}  # forwarded, the backend's answer relayed


async def records_of(gateway: Gateway, response: httpx2.Response) -> list[AuditRecord]:
    """Every audit record of the request ``response`` answers, once all are written."""
    request_id = response.headers["x-request-id"]
    await until(
        lambda: gateway.store.audit.for_request(request_id),
        what=f"the audit record of {request_id}",
        interval=0.02,
    )
    assert await gateway.parts.audit.settled(5)
    return await gateway.store.audit.for_request(request_id)


def nested_call(params_levels: int, *, modern: bool = True) -> bytes:
    """A ``tools/call`` of ``echo`` whose ``params`` nest ``params_levels`` levels of objects
    (``params`` itself is the first, ``arguments`` the second), with the ``_meta`` of 2026-07-28
    when ``modern`` (a plain client sends none: the body has no object but these), written out
    by hand: orjson writes at most 254 levels."""
    inner = params_levels - 2
    x = '{"a":' * inner + '"leaf"' + "}" * inner
    meta = f',"_meta":{orjson.dumps(META).decode()}' if modern else ""
    params = f'{{"name":"echo","arguments":{{"text":"deep","x":{x}}}{meta}}}'
    return f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}'.encode()


def error_of(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC error the gateway answered (its id is that of no request: ``null``)."""
    assert response.headers["content-type"] == JSON, response.text
    body = orjson.loads(response.content)
    assert body["jsonrpc"] == "2.0", body
    assert "error" in body, body
    error: dict[str, Any] = body["error"]
    return {**error, "id": body["id"]}


# -- 1. nesting past the limit: refused before the backend, audited --------------------------


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 300, 1000])
@pytest.mark.parametrize("path", ["streamed", "one-shot"])
async def test_params_nested_past_the_limit_are_refused_before_the_backend_and_audited(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, levels: int, path: str
) -> None:
    modern = path == "streamed"
    headers = modern_headers("tools/call", "echo") if modern else PLAIN
    body = nested_call(levels, modern=modern)

    response = await http.post(gateway.url("tools"), content=body, headers=headers)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == INVALID_REQUEST
    assert str(MAX_DEPTH) in error["message"]
    assert backend.witness.calls["echo"] == 0
    assert backend.witness.bodies_naming('"deep"') == []
    (record,) = await records_of(gateway, response)
    assert (record.tool, record.outcome, record.status) == ("echo", "jsonrpc_error", 400)
    assert record.arguments["text"] == "deep"  # kept, cut where it nests too deep


@pytest.mark.parametrize("path", ["streamed", "one-shot"])
async def test_params_nested_to_the_limit_still_reach_the_tool(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, path: str
) -> None:
    modern = path == "streamed"
    headers = modern_headers("tools/call", "echo") if modern else PLAIN
    body = nested_call(MAX_DEPTH, modern=modern)

    response = await http.post(gateway.url("tools"), content=body, headers=headers)

    assert response.status_code == 200, response.text
    assert backend.witness.calls["echo"] == 1
    (record,) = await records_of(gateway, response)
    assert (record.tool, record.outcome) == ("echo", "ok")


async def test_a_body_past_the_parsers_own_nesting_limit_is_a_parse_error_audited(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    body = nested_call(5000, modern=False)

    response = await http.post(gateway.url("tools"), content=body, headers=PLAIN)

    assert response.status_code == 400
    assert error_of(response)["code"] == PARSE_ERROR
    (record,) = await records_of(gateway, response)
    assert (record.outcome, record.status) == ("http_error", 400)


# -- 2. the same on the OpenAPI route: a JSON problem with the request id, audited -------------


@pytest.mark.parametrize("levels", [MAX_DEPTH, 300, 1000])
async def test_arguments_nested_past_the_limit_on_the_openapi_route_are_a_json_problem_audited(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, levels: int
) -> None:
    body = '{"text":"deep","x":' + '{"a":' * levels + '"leaf"' + "}" * levels + "}"
    url = f"{gateway.base}/api/v1/mcp/tools/tools/echo"

    response = await http.post(url, content=body, headers=PLAIN)

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_arguments"
    assert str(MAX_DEPTH - 1) in response.json()["message"]
    assert backend.witness.calls["echo"] == 0
    (record,) = await records_of(gateway, response)
    assert (record.tool, record.outcome, record.status) == ("echo", "jsonrpc_error", 422)


# -- 3. ids that are no JSON-RPC id --------------------------------------------------------------

NO_IDS = [{"a": 1}, [1], [], {}, 1.5, True, None]


@pytest.mark.parametrize("value", NO_IDS, ids=repr)
@pytest.mark.parametrize("headers", [PLAIN, STREAMED], ids=["one-shot", "streamed"])
async def test_a_request_whose_id_is_no_string_or_integer_is_refused_with_a_null_id_and_audited(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, value: Any, headers: Any
) -> None:
    call = {"jsonrpc": "2.0", "id": value, "method": "tools/call", "params": {"name": "echo"}}

    response = await http.post(gateway.url("tools"), json=call, headers=headers)

    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["id"]) == (INVALID_REQUEST, None)
    assert backend.witness.calls["echo"] == 0
    (record,) = await records_of(gateway, response)
    assert (record.outcome, record.status) == ("http_error", 400)


@pytest.mark.parametrize("value", [{"a": 1}, [1], 1.5], ids=repr)
async def test_a_response_or_batch_member_with_such_an_id_is_refused_whole_and_audited(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, value: Any
) -> None:
    answer = {"jsonrpc": "2.0", "id": value, "result": {}}
    good = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo"}}

    for body in (answer, [good, answer]):
        response = await http.post(gateway.url("tools"), json=body, headers=STREAMED)

        assert response.status_code == 400
        assert error_of(response)["code"] == INVALID_REQUEST
        assert len(await records_of(gateway, response)) == 1
    assert backend.witness.calls["echo"] == 0


@pytest.mark.parametrize("value", [{"a": 1}, [1], [], 1.5, None], ids=repr)
def test_the_outcome_bookkeeping_never_raises_on_any_id(value: Any) -> None:
    call = Call("tools/call", value, {"name": "echo", "arguments": {"text": "x"}})
    exchange = Exchange("r1", "tools", 0.0, inbound=Inbound((call,), batch=False), status=200)
    exchange.note_response({"jsonrpc": "2.0", "id": value, "result": {}})

    (event,) = exchange.events()

    assert (event.tool, event.outcome) == ("echo", "http_error")  # no answer of its own


# -- 5. bodies without an id: one record each, refused or forwarded -----------------------------

NOTIFICATION = {"jsonrpc": "2.0", "method": "notifications/initialized"}


async def test_a_notification_forwarded_to_the_backend_is_audited(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    for headers in (STREAMED, PLAIN):
        response = await http.post(gateway.url("tools"), json=NOTIFICATION, headers=headers)

        assert response.status_code == 202, response.text
        (record,) = await records_of(gateway, response)
        assert (record.method, record.tool) == ("notifications/initialized", None)
        assert (record.outcome, record.status) == ("ok", 202)


async def test_a_notification_refused_for_want_of_a_token_is_audited(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    await gateway.add_server("signed", port=backend.port, oauth={"required": True})

    response = await http.post(gateway.url("signed"), json=NOTIFICATION, headers=STREAMED)

    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    (record,) = await records_of(gateway, response)
    assert (record.method, record.outcome, record.status) == (
        "notifications/initialized",
        "jsonrpc_error",
        401,
    )


async def test_a_notification_whose_headers_contradict_it_is_audited(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    headers = modern_headers("tools/list")

    response = await http.post(gateway.url("tools"), json=NOTIFICATION, headers=headers)

    assert response.status_code == 400
    assert error_of(response)["code"] == -32020
    (record,) = await records_of(gateway, response)
    assert (record.method, record.status) == ("notifications/initialized", 400)


async def test_a_notification_calling_a_denied_tool_is_refused_and_audited(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    note = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "delete_all"}}

    response = await http.post(gateway.url("guarded"), json=note, headers=STREAMED)

    assert response.status_code == 400
    assert backend.witness.bodies_naming("delete_all") == []
    (record,) = await records_of(gateway, response)
    assert (record.tool, record.outcome) == ("delete_all", "jsonrpc_error")


async def test_a_batch_of_notifications_alone_is_one_record(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}

    response = await http.post(gateway.url("tools"), json=[NOTIFICATION, progress], headers=PLAIN)

    assert response.status_code == 202, response.text
    (record,) = await records_of(gateway, response)
    assert record.method == "notifications/initialized"


# -- 7. no route reads a body past the limit --------------------------------------------------


def agents_headers(gateway: Gateway) -> dict[str, str]:
    token = gateway.token("tools", "user", audience="mcp")
    return {"Authorization": f"Bearer {token}", "Content-Type": JSON}


def fixed(headers: dict[str, str]) -> Callable[[Gateway], dict[str, str]]:
    return lambda gateway: headers


ROUTES: dict[str, tuple[str, Callable[[Gateway], dict[str, str]]]] = {
    "mcp": ("/api/v1/mcp/tools/mcp", fixed(STREAMED)),
    "one-shot": ("/api/v1/mcp/tools/jsonrpc", fixed(PLAIN)),
    "openapi": ("/api/v1/mcp/tools/tools/echo", fixed(PLAIN)),
    "agents": ("/api/v1/agents/helper/messages", agents_headers),
}


@pytest.mark.parametrize("route", list(ROUTES))
async def test_a_body_past_the_limit_is_refused_before_the_client_has_sent_it(
    gateway: Gateway, backend: Backend, route: str
) -> None:
    path, headers = ROUTES[route]

    answered = await post_in_chunks(gateway.base + path, headers(gateway))

    assert answered.status == 413
    # Socket buffers hold a few MiB in flight; a server that read on would take all 64.
    assert answered.sent < answered.total // 4, answered


async def test_a_body_past_the_limit_on_the_openapi_route_is_audited_with_its_request_id(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = f"{gateway.base}/api/v1/mcp/tools/tools/echo"

    response = await http.post(url, content=b" " * (MAX_BODY_BYTES + 1), headers=PLAIN)

    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    (record,) = await records_of(gateway, response)
    assert (record.tool, record.status) == ("echo", 413)
