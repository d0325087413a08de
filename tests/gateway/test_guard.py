"""The transport guard: Origin, Host and the body cap, checked before anything reaches a backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2

from tests.gateway.conftest import MAX_BODY_BYTES, Backend
from tests.gateway.helpers import Gateway, call_body, call_modern, modern_headers


def assert_refused(response: httpx2.Response, status: int, code: int) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["x-request-id"]


async def test_a_foreign_origin_is_forbidden(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    headers = {**modern_headers("tools/call", "echo"), "Origin": "https://evil.example"}
    response = await http.post(gateway.url("tools"), content=call_body("echo"), headers=headers)

    assert_refused(response, 403, -32600)
    assert backend.witness.requests == []


async def test_a_loopback_origin_on_any_port_is_allowed(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    headers = {**modern_headers("tools/call", "echo"), "Origin": "http://localhost:6274"}
    body = call_body("echo", {"text": "from the inspector"})

    response = await http.post(gateway.url("tools"), content=body, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["result"]["structuredContent"] == {"result": "from the inspector"}


async def test_a_host_that_is_not_served_here_is_misdirected(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    headers = {**modern_headers("tools/call", "echo"), "Host": "rebound.example"}
    response = await http.post(gateway.url("tools"), content=call_body("echo"), headers=headers)

    assert_refused(response, 421, -32600)
    assert backend.witness.requests == []


async def test_a_body_declared_over_the_cap_is_refused(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    too_big = {"text": "x" * MAX_BODY_BYTES}
    response = await call_modern(http, gateway.url("tools"), "echo", too_big)

    assert_refused(response, 413, -32600)
    assert backend.witness.requests == []


async def test_a_chunked_body_that_grows_over_the_cap_is_refused(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield call_body("echo", {"text": "x" * (MAX_BODY_BYTES // 2)})
        yield b" " * MAX_BODY_BYTES  # valid JSON whitespace, but over the cap

    response = await http.post(
        gateway.url("tools"), content=chunks(), headers=modern_headers("tools/call", "echo")
    )

    assert "content-length" not in response.request.headers
    assert_refused(response, 413, -32600)
    assert backend.witness.requests == []


async def test_a_body_that_is_not_json_is_a_parse_error(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    response = await http.post(
        gateway.url("tools"), content=b"{not json", headers=modern_headers("tools/call")
    )

    assert_refused(response, 400, -32700)
    assert backend.witness.requests == []


async def test_a_method_other_than_get_post_delete_is_not_allowed(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await http.put(gateway.url("tools"), content=call_body("echo"))

    assert_refused(response, 405, -32600)
    assert response.headers["allow"] == "GET, POST, DELETE"
