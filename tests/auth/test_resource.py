"""The gateway as a resource server: who may call which server and tool, and how a refusal
tells the client what to do (RFC 6750 §3, RFC 9728 §5.1, RFC 9449 §7)."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from mcp import Client

from atrium.client.dpop import generate_key, make_proof
from tests.auth.flow import Browser, bearer, call_tool, challenge, dpop, list_tools, tokens_for
from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    Gateway,
    legacy_headers,
    legacy_session,
    list_body,
    messages,
)

PRM = "/.well-known/oauth-protected-resource/api/v1/mcp"


async def direct_tool_names(backend: Backend) -> list[str]:
    async with Client(backend.url) as client:
        return [tool.name for tool in (await client.list_tools()).tools]


# -- authentication -------------------------------------------------------------------------


async def test_no_token_gets_a_401_challenge_naming_the_resource_metadata(
    gateway: Gateway, http: httpx2.AsyncClient, backend: Backend
) -> None:
    response = await call_tool(http, gateway.url("users"), "echo")

    assert response.status_code == 401
    header = response.headers["www-authenticate"]
    assert header.startswith("Bearer ")
    assert 'DPoP algs="' in header  # dpop: optional offers both schemes (RFC 9449 §7.1)
    params = challenge(response)
    assert params["resource_metadata"] == f"{gateway.base}{PRM}/users/mcp"
    assert params["scope"] == "user"
    assert "error" not in params  # RFC 6750 §3.1: no error when no credentials were sent
    assert backend.witness.calls["echo"] == 0


async def test_a_server_that_requires_dpop_challenges_with_dpop_first(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    required = await call_tool(http, gateway.url("bound"), "echo")
    off = await call_tool(http, gateway.url("plain"), "echo")

    assert required.headers["www-authenticate"].startswith("DPoP ")
    assert "DPoP" not in off.headers["www-authenticate"]


async def test_an_unknown_authorization_scheme_is_an_invalid_request(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    token = gateway.token("users", "user")

    response = await call_tool(
        http, gateway.url("users"), "echo", {"Authorization": f"MAC {token}"}
    )

    assert (response.status_code, challenge(response)["error"]) == (400, "invalid_request")


async def test_the_audience_must_be_this_server_or_its_configured_audience(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    default = gateway.token("admins", "admin", audience="mcp")

    on_admins = await call_tool(http, gateway.url("admins"), "echo", bearer(default))
    on_users = await call_tool(http, gateway.url("users"), "echo", bearer(default))

    assert on_admins.status_code == 200  # admins: oauth.audience is "mcp"
    assert (on_users.status_code, challenge(on_users)["error"]) == (401, "invalid_token")


async def test_an_unbound_token_under_the_dpop_scheme_or_on_a_dpop_server_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    key, token = generate_key(), gateway.token("bound", "user")

    as_dpop = await call_tool(
        http, gateway.url("bound"), "echo", dpop(token, key, gateway.url("bound"))
    )
    as_bearer = await call_tool(http, gateway.url("bound"), "echo", bearer(token))

    assert (as_dpop.status_code, challenge(as_dpop)["error"]) == (401, "invalid_token")
    assert (as_bearer.status_code, challenge(as_bearer)["error"]) == (401, "invalid_token")


async def test_a_bound_token_on_a_server_with_dpop_off_is_refused(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    key, server = generate_key(), gateway.url("plain")
    token = gateway.token("plain", "user", jkt=key.thumbprint())

    response = await call_tool(http, server, "echo", dpop(token, key, server))

    assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


# -- the server's scopes and client -------------------------------------------------------


async def test_a_token_without_the_servers_scope_gets_403_naming_the_scope(
    gateway: Gateway, http: httpx2.AsyncClient, backend: Backend
) -> None:
    token = gateway.token("users", "tools:write")

    response = await call_tool(http, gateway.url("users"), "echo", bearer(token))

    assert response.status_code == 403
    params = challenge(response)
    assert (params["error"], params["scope"]) == ("insufficient_scope", "user")
    assert params["resource_metadata"] == f"{gateway.base}{PRM}/users/mcp"
    assert backend.witness.calls["echo"] == 0


async def test_admin_passes_any_servers_scopes(gateway: Gateway, http: httpx2.AsyncClient) -> None:
    for server in ("users", "admins", "readers"):
        token = gateway.token(server, "admin")
        response = await call_tool(http, gateway.url(server), "echo", bearer(token))
        assert response.status_code == 200, (server, response.text)


async def test_only_the_configured_client_may_call_a_one_client_server(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    server = gateway.url("one-client")
    mine = gateway.token("one-client", "user", "tools:write", client_id="the-only-one")
    theirs = gateway.token("one-client", "user", "tools:write", client_id="someone-else")

    assert (await call_tool(http, server, "echo", bearer(mine))).status_code == 200
    refused = await call_tool(http, server, "echo", bearer(theirs))
    assert refused.status_code == 403


# -- which tools a caller sees and calls --------------------------------------------------


async def test_an_anonymous_caller_sees_and_calls_only_the_public_tools(
    gateway: Gateway, http: httpx2.AsyncClient, backend: Backend
) -> None:
    server = gateway.url("open")

    assert await list_tools(http, server) == ["echo"]
    assert (await call_tool(http, server, "echo")).status_code == 200
    private = await call_tool(http, server, "peek")
    assert private.status_code == 401
    assert challenge(private)["resource_metadata"] == f"{gateway.base}{PRM}/open/mcp"
    assert backend.witness.calls["peek"] == 0


async def test_a_signed_in_caller_with_tools_write_on_an_open_server_sees_every_tool(
    gateway: Gateway, http: httpx2.AsyncClient, backend: Backend
) -> None:
    token = gateway.token("open", "user", "tools:write")

    listed = await list_tools(http, gateway.url("open"), bearer(token))

    assert listed == await direct_tool_names(backend)


async def test_a_token_with_only_user_on_an_open_server_sees_only_the_public_tools(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    # ``user`` lets a caller in but calls nothing by itself (atrium.auth.roles; issue 19 §3).
    token = gateway.token("open", "user")

    assert await list_tools(http, gateway.url("open"), bearer(token)) == ["echo"]


async def test_a_tools_read_caller_sees_and_calls_only_read_only_tools(
    gateway: Gateway, http: httpx2.AsyncClient, backend: Backend
) -> None:
    # The built-in "reader" role: user + tools:read.
    server, headers = gateway.url("readers"), bearer(gateway.token("readers", "user", "tools:read"))

    assert await list_tools(http, server, headers) == ["peek"]
    assert (await call_tool(http, server, "peek", headers)).status_code == 200
    refused = await call_tool(http, server, "echo", headers)
    assert refused.status_code == 403
    params = challenge(refused)
    assert (params["error"], params["scope"]) == ("insufficient_scope", "tools:write")
    assert backend.witness.calls["echo"] == 0


async def test_the_reader_role_signs_in_and_gets_read_only_access(
    gateway: Gateway, browser: Browser, client: dict[str, Any], http: httpx2.AsyncClient
) -> None:
    server = gateway.url("readers")
    tokens = await tokens_for(
        browser,
        http,
        gateway.base,
        client["client_id"],
        username="reader",
        resource=server,
        scope="user tools:read",  # what the server's metadata lists in scopes_supported
    )
    assert tokens["scope"] == "tools:read user"
    headers = bearer(tokens["access_token"])

    assert await list_tools(http, server, headers) == ["peek"]
    refused = await call_tool(http, server, "echo", headers)
    assert (refused.status_code, challenge(refused)["scope"]) == (403, "tools:write")


async def test_a_tools_read_callers_list_is_filtered_in_an_event_stream_too(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    http.headers.update(bearer(gateway.token("readers", "user", "tools:read")))
    url = gateway.url("readers")
    session = await legacy_session(http, url)

    response = await http.post(
        url, content=list_body(modern=False), headers=legacy_headers(session)
    )

    assert response.headers["content-type"].startswith("text/event-stream")
    (answer,) = messages(response)
    assert [tool["name"] for tool in answer["result"]["tools"]] == ["peek"]


async def test_a_caller_with_tools_write_is_not_read_only(
    gateway: Gateway, http: httpx2.AsyncClient, backend: Backend
) -> None:
    headers = bearer(gateway.token("readers", "user", "tools:read", "tools:write"))

    listed = await list_tools(http, gateway.url("readers"), headers)

    assert listed == await direct_tool_names(backend)
    assert (await call_tool(http, gateway.url("readers"), "echo", headers)).status_code == 200


async def test_per_tool_scopes_hide_and_refuse_the_tools_they_guard(
    gateway: Gateway, http: httpx2.AsyncClient, backend: Backend
) -> None:
    server = gateway.url("per-tool")
    user = bearer(gateway.token("per-tool", "user", "tools:read", "tools:write"))
    uploader = bearer(gateway.token("per-tool", "user", "uploader"))

    everything = await direct_tool_names(backend)
    guarded = {"upload", "delete_everything"}
    assert await list_tools(http, server, user) == [t for t in everything if t not in guarded]
    refused = await call_tool(http, server, "upload", user, {"content": "x"})
    assert refused.status_code == 403
    params = challenge(refused)
    assert (params["error"], params["scope"]) == ("insufficient_scope", "uploader")
    assert backend.witness.calls["upload"] == 0
    assert (await call_tool(http, server, "upload", uploader, {"content": "x"})).status_code == 200
    denied = await call_tool(http, server, "delete_everything", uploader)
    assert (denied.status_code, challenge(denied)["scope"]) == (403, "admin")


async def test_admin_sees_and_calls_every_tool(
    gateway: Gateway, http: httpx2.AsyncClient, backend: Backend
) -> None:
    everything = await direct_tool_names(backend)
    for server in ("per-tool", "readers"):
        headers = bearer(gateway.token(server, "admin"))
        assert await list_tools(http, gateway.url(server), headers) == everything, server
    deleted = await call_tool(
        http,
        gateway.url("per-tool"),
        "delete_everything",
        bearer(gateway.token("per-tool", "admin")),
    )
    assert deleted.status_code == 200


async def test_the_audit_names_the_subject_and_the_client(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    token = gateway.token("users", "user", "tools:write", subject="user-42", client_id="cli-7")

    response = await call_tool(http, gateway.url("users"), "echo", bearer(token))

    assert response.status_code == 200
    (record,) = await gateway.audit_of("users")
    assert (record.subject, record.client_id, record.tool) == ("user-42", "cli-7", "echo")


async def test_a_token_in_the_query_string_is_not_accepted(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    # OAuth 2.1 §5.2: the URI query carries no access token.
    token = gateway.token("users", "user")

    response = await call_tool(http, f"{gateway.url('users')}?access_token={token}", "echo")

    assert response.status_code == 401


@pytest.mark.parametrize("oauth_options", [{"dpop_nonce": True}])
async def test_with_dpop_nonces_the_gateway_asks_for_one_and_takes_the_retry(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    key, server = generate_key(), gateway.url("bound")
    token = gateway.token("bound", "user", "tools:write", jkt=key.thumbprint())

    first = await call_tool(http, server, "echo", dpop(token, key, server))

    assert (first.status_code, challenge(first)["error"]) == (401, "use_dpop_nonce")  # §9
    nonce = first.headers["dpop-nonce"]
    proof = make_proof(key, method="POST", url=server, access_token=token, nonce=nonce)
    retry = await call_tool(http, server, "echo", {"Authorization": f"DPoP {token}", "DPoP": proof})
    assert retry.status_code == 200, retry.text


async def test_a_refused_call_is_audited_with_who_tried_it(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    server = gateway.url("readers")
    token = gateway.token("readers", "user", "tools:read", subject="user-9", client_id="cli-9")

    response = await call_tool(http, server, "echo", bearer(token))

    assert response.status_code == 403
    (record,) = await gateway.audit_of("readers")
    assert (record.subject, record.client_id, record.tool) == ("user-9", "cli-9", "echo")
    assert record.status == 403


async def test_signing_in_never_takes_away_the_public_tools(
    gateway: Gateway, http: httpx2.AsyncClient, backend: Backend
) -> None:
    token = gateway.token("open", "tools:read")  # read-only: echo is not annotated read-only

    called = await call_tool(http, gateway.url("open"), "echo", bearer(token))

    assert called.status_code == 200
    assert backend.witness.calls["echo"] == 1


async def test_an_unauthenticated_attempt_is_audited_with_the_tool_it_tried(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await call_tool(http, gateway.url("users"), "echo")

    assert response.status_code == 401
    (record,) = await gateway.audit_of("users")
    assert (record.subject, record.method, record.tool, record.status) == (
        None,
        "tools/call",
        "echo",
        401,
    )
