"""Who may see and call which tool (atrium.gateway.access), tried the way a caller would:
through the real gateway, with no token or with tokens minted with the project's key.

Each attack of issue 10 §3 and issue 19 is reproduced and must now be refused before the
backend sees it; the cases that must keep working sit beside them. ``RULES`` are the servers
of these tests, each with its own ``oauth`` block, all routed to the toolkit backend.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx2
import pytest
from mcp import Client

from atrium.auth.resource_guard import ANONYMOUS, Caller
from atrium.auth.roles import Roles
from atrium.gateway.access import ToolAccess, ToolCatalog
from atrium.gateway.policy import Policy
from atrium.registry.schema import parse_server_config
from atrium.scaffold.project import PEOPLE
from tests.auth.flow import bearer, call_tool, challenge
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, list_body, messages, modern_headers, server_record

RULES: dict[str, dict[str, Any]] = {
    "no-sign-in": {"oauth": {"required": False}},
    "dev": {"oauth": {"dev_mode": True}},
    "dev-public": {"oauth": {"dev_mode": True}, "tools": {"public": ["echo"]}},
    "admin-tools": {"oauth": {"required": False}, "tools": {"scopes": {"admin_*": ["admin"]}}},
    "dev-admin-tools": {
        "oauth": {"dev_mode": True},
        "tools": {"scopes": {"admin_*": ["admin"], "peek": ["auditor"]}},
    },
    "public-guarded": {
        "oauth": {"required": False},
        "tools": {"public": ["echo", "peek"], "scopes": {"peek": ["auditor"]}},
    },
    "sign-in": {"oauth": {"required": True}},
    "sign-in-public": {"oauth": {"required": True}, "tools": {"public": ["echo"]}},
    "reports": {"oauth": {"required": True, "scopes": ["reports"]}},
    "uploads": {"oauth": {"required": True}, "tools": {"scopes": {"upload": ["uploader"]}}},
    "user-uploads": {"oauth": {"required": True}, "tools": {"scopes": {"upload": ["user"]}}},
    "people": {"oauth": {"required": True, "scopes": list(PEOPLE)}},  # soul, content-manager
}

# name -> the scopes of a caller's token (None: no token at all)
CALLERS: dict[str, tuple[str, ...] | None] = {
    "no token": None,
    "anonymous role": ("anonymous",),
    "reader role": ("user", "tools:read"),
    "user role": ("user", "tools:read", "tools:write"),
    "admin role": ("admin", "user", "tools:read", "tools:write"),
    "extra scope": ("reports", "tools:read", "user"),  # issue 19 §3
    "user scope only": ("user",),
    "unknown scope only": ("reports",),
    "uploader, read-only": ("tools:read", "uploader"),
    "auditor": ("auditor",),
}

READ_ONLY = ["peek"]  # the backend's one tool annotated readOnlyHint


@pytest.fixture
async def rules(gateway: Gateway, backend: Backend) -> Gateway:
    records = [server_record(name, {"port": backend.port, **c}) for name, c in RULES.items()]
    await gateway.store.servers.save(records)
    await gateway.parts.directory.refresh()
    return gateway


@pytest.fixture
async def everything(backend: Backend) -> list[str]:
    """Every tool of the backend, in its order, asked directly (no gateway)."""
    async with Client(backend.url) as client:
        return [tool.name for tool in (await client.list_tools()).tools]


def auth(gateway: Gateway, server: str, scopes: tuple[str, ...] | None) -> dict[str, str]:
    return {} if scopes is None else bearer(gateway.token(server, *scopes))


async def listed(
    http: httpx2.AsyncClient, gateway: Gateway, server: str, scopes: tuple[str, ...] | None
) -> httpx2.Response:
    headers = {**modern_headers("tools/list"), **auth(gateway, server, scopes)}
    return await http.post(gateway.url(server), content=list_body(), headers=headers)


async def names(
    http: httpx2.AsyncClient, gateway: Gateway, server: str, scopes: tuple[str, ...] | None
) -> list[str]:
    response = await listed(http, gateway, server, scopes)
    assert response.status_code == 200, response.text
    (answer,) = messages(response)
    return [tool["name"] for tool in answer["result"]["tools"]]


async def call(
    http: httpx2.AsyncClient,
    gateway: Gateway,
    server: str,
    tool: str,
    scopes: tuple[str, ...] | None,
) -> httpx2.Response:
    arguments = {"content": "x"} if tool == "upload" else None  # call_tool knows echo's
    headers = auth(gateway, server, scopes)
    return await call_tool(http, gateway.url(server), tool, headers, arguments)


def refused_for(response: httpx2.Response, status: int, scope: str | None = None) -> bool:
    """A gateway refusal: 401 asking to sign in, or 403 naming the scope that would do."""
    params = challenge(response)
    if status == 401:
        return response.status_code == 401 and "resource_metadata" in params
    return response.status_code == 403 and params.get("scope") == scope


# -- issue 10 §3: without a token, the read-only tools only -----------------------------------


async def test_without_a_token_a_server_without_sign_in_offers_only_read_only_tools(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    assert await names(http, rules, "no-sign-in", None) == READ_ONLY
    assert (await call(http, rules, "no-sign-in", "peek", None)).status_code == 200

    for tool in ("echo", "delete_everything", "admin_reset"):
        assert refused_for(await call(http, rules, "no-sign-in", tool, None), 401), tool
        assert backend.witness.calls[tool] == 0


async def test_a_write_tool_is_refused_to_a_caller_who_never_listed_the_tools(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    refused = await call(http, rules, "no-sign-in", "delete_everything", None)

    assert refused_for(refused, 401)
    # The gateway may look the tool's annotations up (tools/list); the tool never runs.
    assert [r for r in backend.witness.requests if b"tools/call" in r.body] == []
    assert backend.witness.calls["delete_everything"] == 0


async def test_dev_mode_opens_every_allowed_tool_to_callers_without_a_token(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient, everything: list[str]
) -> None:
    assert await names(http, rules, "dev", None) == everything
    assert (await call(http, rules, "dev", "echo", None)).status_code == 200
    assert backend.witness.calls["echo"] == 1


async def test_tools_public_narrows_what_callers_without_a_token_get_even_in_dev_mode(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    assert await names(http, rules, "dev-public", None) == ["echo"]
    assert (await call(http, rules, "dev-public", "echo", None)).status_code == 200
    assert refused_for(await call(http, rules, "dev-public", "peek", None), 401)
    assert backend.witness.calls["peek"] == 0


async def test_the_gateway_warns_about_each_dev_mode_server_every_time_it_loads_them(
    rules: Gateway, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="atrium.gateway.directory")

    await rules.add_server("late", port=backend.port, oauth={"required": False})

    warned = [r.getMessage() for r in caplog.records if "oauth.dev_mode" in r.getMessage()]
    for server in ("dev", "dev-public", "dev-admin-tools"):
        assert sum(f"server {server} " in message for message in warned) == 1, warned
    for server in ("no-sign-in", "sign-in", "late"):
        assert not any(f"server {server} " in message for message in warned), warned


# -- issue 19 item 1: per-tool scopes bind every caller ---------------------------------------


@pytest.mark.parametrize("caller", ["reader role", "user role", "extra scope"])
async def test_per_tool_scopes_bind_signed_in_callers_on_a_server_without_sign_in(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient, caller: str
) -> None:
    scopes = CALLERS[caller]

    refused = await call(http, rules, "admin-tools", "admin_reset", scopes)

    assert refused_for(refused, 403, "admin")
    assert "admin_reset" not in await names(http, rules, "admin-tools", scopes)
    assert backend.witness.calls["admin_reset"] == 0


async def test_per_tool_scopes_bind_callers_without_a_token_even_in_dev_mode(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient, everything: list[str]
) -> None:
    guarded = {"admin_reset", "peek"}

    assert await names(http, rules, "dev-admin-tools", None) == [
        tool for tool in everything if tool not in guarded
    ]
    for tool in sorted(guarded):
        assert refused_for(await call(http, rules, "dev-admin-tools", tool, None), 401), tool
        assert backend.witness.calls[tool] == 0


async def test_admin_still_calls_the_tools_per_tool_scopes_keep_for_it(
    rules: Gateway, http: httpx2.AsyncClient, everything: list[str]
) -> None:
    admin = CALLERS["admin role"]

    assert await names(http, rules, "admin-tools", admin) == everything
    assert (await call(http, rules, "admin-tools", "admin_reset", admin)).status_code == 200


async def test_a_public_tool_that_also_has_scopes_needs_the_scope(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    auditor = CALLERS["auditor"]

    assert await names(http, rules, "public-guarded", None) == ["echo"]
    assert refused_for(await call(http, rules, "public-guarded", "peek", None), 401)
    assert backend.witness.calls["peek"] == 0
    assert await names(http, rules, "public-guarded", auditor) == ["echo", "peek"]
    assert (await call(http, rules, "public-guarded", "peek", auditor)).status_code == 200


# -- issue 19 item 2: the anonymous scope is public tools only --------------------------------


async def test_a_token_with_only_the_anonymous_scope_gets_nothing_on_a_sign_in_only_server(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    anonymous = CALLERS["anonymous role"]

    assert await names(http, rules, "sign-in", anonymous) == []
    write = await call(http, rules, "sign-in", "echo", anonymous)
    read = await call(http, rules, "sign-in", "peek", anonymous)

    assert refused_for(write, 403, "tools:write")
    assert refused_for(read, 403, "tools:read")
    assert backend.witness.calls["echo"] == backend.witness.calls["peek"] == 0


@pytest.mark.parametrize(
    "server", ["no-sign-in", "dev", "dev-public", "admin-tools", "dev-admin-tools"]
)
async def test_a_token_with_only_the_anonymous_scope_gets_what_no_token_gets(
    rules: Gateway, http: httpx2.AsyncClient, server: str
) -> None:
    without = await names(http, rules, server, None)

    assert await names(http, rules, server, CALLERS["anonymous role"]) == without


async def test_on_a_sign_in_only_server_tools_public_is_what_the_anonymous_scope_gets(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    anonymous = CALLERS["anonymous role"]

    assert await names(http, rules, "sign-in-public", anonymous) == ["echo"]
    assert (await call(http, rules, "sign-in-public", "echo", anonymous)).status_code == 200
    assert refused_for(await call(http, rules, "sign-in-public", "echo", None), 401)
    assert backend.witness.calls["echo"] == 1


# -- issue 19 item 3: only what the token grants lifts read-only ------------------------------


@pytest.mark.parametrize("server", ["sign-in", "people"])
async def test_an_extra_scope_beside_tools_read_does_not_lift_read_only(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient, server: str
) -> None:
    extra = CALLERS["extra scope"]

    assert await names(http, rules, server, extra) == READ_ONLY
    refused = await call(http, rules, server, "echo", extra)

    assert refused_for(refused, 403, "tools:write")
    assert backend.witness.calls["echo"] == 0


@pytest.mark.parametrize("caller", ["user scope only", "unknown scope only"])
async def test_a_scope_that_grants_no_tool_reaches_no_further_than_no_token(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient, caller: str
) -> None:
    scopes = CALLERS[caller]

    assert await names(http, rules, "sign-in", scopes) == []
    assert await names(http, rules, "no-sign-in", scopes) == READ_ONLY
    assert refused_for(await call(http, rules, "no-sign-in", "echo", scopes), 403, "tools:write")
    assert backend.witness.calls["echo"] == 0


async def test_a_scope_the_server_names_grants_every_tool(
    rules: Gateway, http: httpx2.AsyncClient, everything: list[str]
) -> None:
    reports = CALLERS["unknown scope only"]  # unknown elsewhere, named by this server

    assert await names(http, rules, "reports", reports) == everything
    assert (await call(http, rules, "reports", "echo", reports)).status_code == 200


async def test_a_tools_own_scope_grants_that_tool_to_a_read_only_caller(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    uploader = CALLERS["uploader, read-only"]

    assert await names(http, rules, "uploads", uploader) == ["peek", "upload"]
    assert (await call(http, rules, "uploads", "upload", uploader)).status_code == 200
    assert refused_for(await call(http, rules, "uploads", "echo", uploader), 403, "tools:write")
    assert backend.witness.calls["echo"] == 0


async def test_naming_user_in_a_tools_scopes_does_not_lift_read_only(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    reader, user = CALLERS["reader role"], CALLERS["user role"]

    refused = await call(http, rules, "user-uploads", "upload", reader)

    assert refused_for(refused, 403, "tools:write")
    assert backend.witness.calls["upload"] == 0
    assert (await call(http, rules, "user-uploads", "upload", user)).status_code == 200


@pytest.mark.parametrize(
    ("role", "reach"), [("reader", "read"), ("user", "every"), ("admin", "every")]
)
async def test_the_built_in_roles_keep_their_abilities_on_a_built_in_servers_policy(
    rules: Gateway, http: httpx2.AsyncClient, everything: list[str], role: str, reach: str
) -> None:
    # What a client asking for the server's scopes (its challenge, its metadata) is granted.
    granted = tuple(sorted(Roles().scopes_of(role) & set(PEOPLE)))

    tools = await names(http, rules, "people", granted)
    echo = await call(http, rules, "people", "echo", granted)

    assert tools == (everything if reach == "every" else READ_ONLY)
    assert echo.status_code == (200 if reach == "every" else 403)


# -- tools/list, calls and the OpenAPI bridge agree -------------------------------------------


@pytest.mark.parametrize("server", list(RULES))
async def test_every_caller_lists_exactly_the_tools_it_may_call(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient, everything: list[str], server: str
) -> None:
    for caller, scopes in CALLERS.items():
        before = len(backend.witness.requests)
        # Listed first: the gateway learns which tools are read-only from tools/list answers.
        listing = await listed(http, rules, server, scopes)
        calls = await asyncio.gather(*(call(http, rules, server, t, scopes) for t in everything))
        shown = (
            [tool["name"] for tool in messages(listing)[0]["result"]["tools"]]
            if listing.status_code == 200
            else []
        )
        callable_ = [t for t, r in zip(everything, calls, strict=True) if r.status_code < 400]
        refused = [r.status_code for r in calls if r.status_code >= 400]
        assert set(refused) <= {401, 403}, (caller, refused)  # the tools' own errors are 200s
        assert shown == callable_, (server, caller)
        reached = len(backend.witness.requests) - before
        assert reached == len(callable_) + (listing.status_code == 200), caller


@pytest.mark.parametrize("server", ["no-sign-in", "admin-tools", "public-guarded", "people"])
async def test_the_openapi_bridge_describes_exactly_the_tools_tools_list_shows(
    rules: Gateway, http: httpx2.AsyncClient, server: str
) -> None:
    for caller, scopes in CALLERS.items():
        spec = await http.get(
            f"{rules.base}/api/v1/mcp/{server}/openapi.json", headers=auth(rules, server, scopes)
        )
        listing = await listed(http, rules, server, scopes)
        assert spec.status_code == listing.status_code, (caller, spec.text)
        if listing.status_code != 200:
            continue  # not let in at all (no token, or none of the server's oauth.scopes)
        paths = [path.rsplit("/", 1)[1] for path in spec.json()["paths"]]
        assert sorted(paths) == sorted(await names(http, rules, server, scopes)), caller


async def test_the_openapi_bridge_refuses_the_same_attacks(
    rules: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    def rest(server: str, tool: str) -> str:
        return f"{rules.base}/api/v1/mcp/{server}/tools/{tool}"

    anonymous_write = await http.post(rest("no-sign-in", "echo"), json={"text": "x"})
    extra = auth(rules, "sign-in", CALLERS["extra scope"])
    extra_write = await http.post(rest("sign-in", "echo"), json={"text": "x"}, headers=extra)
    user = auth(rules, "admin-tools", CALLERS["user role"])
    user_admin = await http.post(rest("admin-tools", "admin_reset"), json={}, headers=user)
    anonymous_read = await http.post(rest("no-sign-in", "peek"), json={})

    assert refused_for(anonymous_write, 401)
    assert refused_for(extra_write, 403, "tools:write")
    assert refused_for(user_admin, 403, "admin")
    assert backend.witness.calls["echo"] == backend.witness.calls["admin_reset"] == 0
    assert anonymous_read.status_code == 200
    assert backend.witness.calls["peek"] == 1


async def test_the_openapi_spec_asks_for_scopes_that_call_tools_where_the_server_names_none(
    rules: Gateway, http: httpx2.AsyncClient
) -> None:
    # A ChatGPT action asks for the spec's scopes; ``user`` alone would call nothing.
    spec = await http.get(
        f"{rules.base}/api/v1/mcp/sign-in/openapi.json",
        headers=auth(rules, "sign-in", CALLERS["user role"]),
    )

    assert spec.json()["security"] == [{"oauth2": ["user", "tools:read", "tools:write"]}]


TOOLS: list[dict[str, Any]] = [
    {"name": "peek", "annotations": {"readOnlyHint": True}},
    {"name": "echo"},
    {"name": "admin_reset", "annotations": {"readOnlyHint": False}},
    {"name": "upload"},
]


@pytest.mark.parametrize("server", list(RULES))
def test_the_fast_path_never_lets_through_a_tool_a_verdict_refuses(server: str) -> None:
    config = parse_server_config({"binary": "b", "port": 5000, **RULES[server]})
    opened = 0
    for scopes in CALLERS.values():
        caller = ANONYMOUS if scopes is None else Caller("s", "c", frozenset(scopes))
        access = ToolAccess(server, config, Policy.of(config.tools), caller, ToolCatalog())
        if access.open:
            opened += 1
            result = {"result": {"tools": [dict(tool) for tool in TOOLS]}}
            assert not access.filter_result(result), (server, scopes)
    assert opened  # admin at least: the fast path is taken, so this test checks something
