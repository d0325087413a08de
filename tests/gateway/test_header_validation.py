"""The gateway checks 2026-07-28 routing headers against the body itself (SEP-2243): a header
that says something else than the body is refused with 400 and -32020 before the backend sees
anything, so no policy is decided on what a backend would read differently. Each test is an
attempt to make the two readings differ."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx2
import pytest

from tests.gateway.conftest import Backend
from tests.gateway.helpers import MODERN, Gateway, call_body, list_body, modern_headers

HEADER_MISMATCH = -32020


def encoded(value: str) -> str:
    return f"=?base64?{base64.b64encode(value.encode()).decode()}?="


def refused(response: httpx2.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == HEADER_MISMATCH


async def learn_tools(http: httpx2.AsyncClient, url: str) -> None:
    """A ``tools/list`` through the gateway: it learns which arguments are headers."""
    response = await http.post(url, content=list_body(), headers=modern_headers("tools/list"))
    assert response.status_code == 200, response.text


async def post(
    http: httpx2.AsyncClient, url: str, body: bytes, headers: list[tuple[str, str]]
) -> httpx2.Response:
    base = [("Accept", "application/json, text/event-stream"), ("Content-Type", "application/json")]
    return await http.post(url, content=body, headers=[*base, *headers])


def modern(*headers: tuple[str, str]) -> list[tuple[str, str]]:
    return [("MCP-Protocol-Version", MODERN), *headers]


@pytest.mark.parametrize(
    "headers",
    [
        modern(("Mcp-Method", "prompts/list")),
        modern(),
        modern(("Mcp-Method", "TOOLS/LIST")),
        modern(("Mcp-Method", "tools/list"), ("Mcp-Method", "tools/list")),
    ],
    ids=["another method", "no method", "the method in capitals", "the method twice"],
)
async def test_a_method_header_that_is_not_the_bodys_is_refused_before_the_backend(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, headers: list[tuple[str, str]]
) -> None:
    response = await post(http, gateway.url("tools"), list_body(), headers)

    refused(response)
    assert backend.witness.requests == []


async def test_header_names_are_read_in_any_case(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    headers = [("mcp-protocol-version", MODERN), ("MCP-METHOD", "tools/list")]

    response = await post(http, gateway.url("tools"), list_body(), headers)

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "name",
    [
        [],
        [("Mcp-Name", "peek")],
        [("Mcp-Name", "echo"), ("Mcp-Name", "peek")],
        [("Mcp-Name", "echo"), ("mcp-name", "echo")],
        [("Mcp-Name", encoded("peek"))],
        [("Mcp-Name", "=?base64?ZWNobw?=")],  # "echo" without its padding: not canonical
        [("Mcp-Name", "=?base64?ZWNobx==?=")],  # "echo" with stray bits: not canonical
    ],
    ids=[
        "missing",
        "another tool",
        "twice, differently",
        "twice, the same",
        "encoded, another tool",
        "encoded without padding",
        "encoded, not canonical",
    ],
)
async def test_a_name_header_that_is_not_the_bodys_is_refused_before_the_backend(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, name: list[tuple[str, str]]
) -> None:
    body = call_body("echo", {"text": "never forwarded"})

    response = await post(
        http, gateway.url("tools"), body, modern(("Mcp-Method", "tools/call"), *name)
    )

    refused(response)
    assert backend.witness.bodies_naming("never forwarded") == []
    assert backend.witness.calls["echo"] == 0


async def test_an_encoded_name_is_read_decoded(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    body = call_body("echo", {"text": "hi"})
    headers = modern(("Mcp-Method", "tools/call"), ("Mcp-Name", encoded("echo")))

    response = await post(http, gateway.url("tools"), body, headers)

    assert response.status_code == 200, response.text
    assert backend.witness.calls["echo"] == 1


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({}, [("Mcp-Param-Region", "eu-west")]),
        ({"region": "eu-west"}, []),
        ({"region": "eu-west"}, [("Mcp-Param-Region", encoded("us-east"))]),
        ({"region": "eu-west"}, [("Mcp-Param-Region", "EU-WEST")]),
        ({"region": "eu-west"}, [("Mcp-Param-Region", "eu-west"), ("mcp-param-region", "us-east")]),
        ({"region": "eu-west"}, [("Mcp-Param-Region", "=?base64?SGVsbG8?=")]),
    ],
    ids=[
        "a header for an argument the body omits",
        "no header for an argument the body has",
        "encoded, another value",
        "the value in capitals",
        "twice",
        "encoded without padding",
    ],
)
async def test_a_param_header_that_is_not_the_arguments_is_refused_before_the_backend(
    gateway: Gateway,
    backend: Backend,
    http: httpx2.AsyncClient,
    arguments: dict[str, Any],
    param: list[tuple[str, str]],
) -> None:
    url = gateway.url("tools")
    await learn_tools(http, url)
    headers = modern(("Mcp-Method", "tools/call"), ("Mcp-Name", "seen_headers"), *param)

    response = await post(http, url, call_body("seen_headers", arguments), headers)

    refused(response)
    assert backend.witness.bodies_naming('"tools/call"') == []


async def test_a_param_header_matching_its_argument_goes_through(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("tools")
    await learn_tools(http, url)
    headers = modern(
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "seen_headers"),
        ("Mcp-Param-Region", encoded("eu-west")),
    )

    response = await post(http, url, call_body("seen_headers", {"region": "eu-west"}), headers)

    assert response.status_code == 200, response.text
    assert backend.witness.calls["seen_headers"] == 1


async def raw_post(url: str, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    """A POST written byte for byte: HTTP client libraries refuse the padded values sent here."""
    address = httpx2.URL(url)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    lines = [f"POST {address.raw_path.decode()} HTTP/1.1", f"Host: {address.netloc.decode()}"]
    lines += [f"{name}:{value}" for name, value in headers]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    writer.write("\r\n".join(lines).encode("latin-1") + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), rest


async def test_whitespace_around_values_is_dropped_and_the_backend_gets_them_trimmed(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("tools")
    await learn_tools(http, url)
    headers = [
        ("Accept", "application/json, text/event-stream"),
        ("Content-Type", "application/json"),
        ("MCP-Protocol-Version", f"\t{MODERN} "),
        ("Mcp-Method", "  tools/call  "),
        ("Mcp-Name", " seen_headers\t"),
        ("Mcp-Param-Region", "  eu-west  "),
    ]

    status, body = await raw_post(url, call_body("seen_headers", {"region": "eu-west"}), headers)

    assert status == 200, body
    seen = backend.witness.requests[-1].headers
    assert (seen["mcp-method"], seen["mcp-name"]) == ("tools/call", "seen_headers")
    assert seen["mcp-param-region"] == "eu-west"
    assert seen["mcp-protocol-version"] == MODERN
    assert backend.witness.calls["seen_headers"] == 1
