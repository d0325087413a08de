"""Rate limits in one gateway, counters in memory: who is counted, what counts, how a refusal
looks (429, ``Retry-After``, JSON-RPC error -32029) and that it never reaches the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import limits
import orjson
from hypothesis import given
from hypothesis import strategies as st

from atrium.auth.resource_guard import ANONYMOUS, Caller
from atrium.gateway.ratelimit import RATE_LIMITED, caller_key, parse
from atrium.settings import load_settings
from atrium.settings.sections import RATE_LIMIT
from atrium.store import Store
from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    JSON,
    Gateway,
    call_body,
    list_body,
    modern_headers,
    running_gateway,
    save_servers,
)
from tests.processes import free_port


@asynccontextmanager
async def limited_gateway(
    tmp_path: Path, backend: Backend, settings_yaml: str = "", **rates: str
) -> AsyncIterator[Gateway]:
    """The test gateway with ``settings_yaml`` as atrium.yaml and a server per ``rates`` entry."""
    (tmp_path / "atrium.yaml").write_text(settings_yaml)
    settings = load_settings(tmp_path, environ={})
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, free_port())
        async with running_gateway(settings, store) as gateway:
            for name, rate in rates.items():
                await gateway.add_server(name, port=backend.port, rate_limit=rate)
            yield gateway


async def call(
    http: httpx2.AsyncClient, gateway: Gateway, server: str, tool: str = "echo", token: str = ""
) -> httpx2.Response:
    headers = modern_headers("tools/call", tool)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    arguments = {"text": "hi"} if tool == "echo" else {}
    return await http.post(gateway.url(server), content=call_body(tool, arguments), headers=headers)


async def test_a_call_past_the_rate_limit_gets_429_retry_after_and_a_json_rpc_error(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with limited_gateway(tmp_path, backend, limited="2/minute") as gateway:
        passed = [await call(http, gateway, "limited") for _ in range(2)]
        refused = await call(http, gateway, "limited")

    assert [response.status_code for response in passed] == [200, 200]
    assert refused.status_code == 429, refused.text
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 60
    body = refused.json()
    assert (body["id"], body["error"]["code"]) == (1, RATE_LIMITED)
    assert body["error"]["data"] == {"error": "rate_limited", "retry_after": retry_after}
    assert backend.witness.calls["echo"] == 2


async def test_each_caller_spends_a_budget_of_their_own(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with limited_gateway(tmp_path, backend, limited="1/minute") as gateway:
        alice = gateway.token("limited", subject="alice")
        bob = gateway.token("limited", subject="bob")
        statuses = [
            (await call(http, gateway, "limited", token=alice)).status_code,
            (await call(http, gateway, "limited", token=alice)).status_code,
            (await call(http, gateway, "limited", token=bob)).status_code,
        ]

    assert statuses == [200, 429, 200]


async def test_anonymous_callers_do_not_spend_the_budget_of_signed_in_ones(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with limited_gateway(tmp_path, backend, limited="1/minute") as gateway:
        alice = gateway.token("limited", subject="alice")
        statuses = [
            (await call(http, gateway, "limited")).status_code,
            (await call(http, gateway, "limited")).status_code,
            (await call(http, gateway, "limited", token=alice)).status_code,
        ]

    assert statuses == [200, 429, 200]


def test_callers_are_keyed_as_users_clients_for_themselves_or_addresses() -> None:
    user = Caller(subject="alice", client_id="claude", scopes=frozenset())
    service = Caller(subject="ci-bot", client_id="ci-bot", scopes=frozenset())

    assert caller_key(user, "10.0.0.1") == "sub:alice"
    assert caller_key(service, "10.0.0.1") == "client:ci-bot"
    assert caller_key(ANONYMOUS, "10.0.0.1") == "anon:10.0.0.1"
    assert caller_key(None, None) == "anon:unknown"


async def test_each_server_has_a_budget_of_its_own(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with limited_gateway(tmp_path, backend, one="1/minute", two="1/minute") as gateway:
        statuses = [
            (await call(http, gateway, "one")).status_code,
            (await call(http, gateway, "one")).status_code,
            (await call(http, gateway, "two")).status_code,
        ]

    assert statuses == [200, 429, 200]


async def test_with_per_tool_each_tool_has_a_budget_of_its_own(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    settings = "ratelimit:\n  per_tool: true\n"
    async with limited_gateway(tmp_path, backend, settings, limited="1/minute") as gateway:
        statuses = [
            (await call(http, gateway, "limited", "echo")).status_code,
            (await call(http, gateway, "limited", "echo")).status_code,
            (await call(http, gateway, "limited", "peek")).status_code,
            (await call(http, gateway, "limited", "peek")).status_code,
        ]

    assert statuses == [200, 429, 200, 429]
    assert (backend.witness.calls["echo"], backend.witness.calls["peek"]) == (1, 1)


async def test_without_per_tool_all_tools_of_a_server_share_its_budget(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with limited_gateway(tmp_path, backend, limited="1/minute") as gateway:
        statuses = [
            (await call(http, gateway, "limited", "echo")).status_code,
            (await call(http, gateway, "limited", "peek")).status_code,
        ]

    assert statuses == [200, 429]


async def test_the_default_limits_servers_without_a_rate_limit_of_their_own(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    settings = "ratelimit:\n  default: 1/minute\n"
    async with limited_gateway(tmp_path, backend, settings, roomy="3/minute") as gateway:
        defaulted = [(await call(http, gateway, "tools")).status_code for _ in range(2)]
        own = [(await call(http, gateway, "roomy")).status_code for _ in range(4)]

    assert defaulted == [200, 429]
    assert own == [200, 200, 200, 429]


async def test_without_a_default_a_server_without_a_rate_limit_is_not_limited(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with limited_gateway(tmp_path, backend) as gateway:
        statuses = {(await call(http, gateway, "tools")).status_code for _ in range(5)}

    assert statuses == {200}


async def test_only_tool_calls_count(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with limited_gateway(tmp_path, backend, limited="1/minute") as gateway:
        headers = modern_headers("tools/list")
        listed = [
            (await http.post(gateway.url("limited"), content=list_body(), headers=headers))
            for _ in range(3)
        ]
        statuses = [(await call(http, gateway, "limited")).status_code for _ in range(2)]

    assert [response.status_code for response in listed] == [200, 200, 200]
    assert statuses == [200, 429]


async def test_a_batch_counts_each_tool_call_and_a_refused_one_reaches_no_backend(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    calls = [orjson.loads(call_body("echo", {"text": str(n)}, id=n)) for n in (1, 2)]
    async with limited_gateway(tmp_path, backend, limited="1/minute") as gateway:
        response = await http.post(
            gateway.url("limited"),
            content=orjson.dumps(calls),
            headers={"Accept": "application/json, text/event-stream", "Content-Type": JSON},
        )

    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == RATE_LIMITED
    assert backend.witness.bodies_naming("tools/call") == []


async def test_a_refused_call_is_audited_with_status_429(
    tmp_path: Path, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with limited_gateway(tmp_path, backend, limited="1/minute") as gateway:
        await call(http, gateway, "limited")
        refused = await call(http, gateway, "limited")
        (record,) = await gateway.audit(refused.headers["x-request-id"])

    assert (record.status, record.outcome, record.tool) == (429, "jsonrpc_error", "echo")


@given(st.from_regex(RATE_LIMIT, fullmatch=True))
def test_every_rate_the_schema_accepts_is_the_rate_enforced(rate: str) -> None:
    count, _, period = rate.strip().replace("per", "/").partition("/")
    item = parse(rate)

    assert item.amount == int(count)
    assert item.multiples == int("".join(c for c in period if c.isdigit()) or 1)
    assert isinstance(item, limits.RateLimitItem)
