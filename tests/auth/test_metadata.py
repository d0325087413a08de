"""Discovery: authorization server metadata (RFC 8414), protected resource metadata
(RFC 9728) and the key set, followed from a 401 as an MCP client does."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx2
import pytest
from joserfc import jws

from atrium.auth.keys import DEFAULT_SIGNS_AFTER_S
from atrium.auth.roles import BUILTIN_SCOPES
from tests.auth.conftest import AUTH_SERVERS
from tests.auth.flow import call_tool, challenge
from tests.gateway.helpers import Gateway

AS_METADATA = "/.well-known/oauth-authorization-server"
PRM = "/.well-known/oauth-protected-resource/api/v1/mcp"
ENDPOINTS = {
    "authorization_endpoint": "authorize",
    "token_endpoint": "token",
    "registration_endpoint": "register",
    "revocation_endpoint": "revoke",
    "introspection_endpoint": "introspect",
}


@pytest.mark.parametrize("path", [AS_METADATA, "/.well-known/openid-configuration"])
async def test_the_authorization_server_metadata_has_the_rfc_8414_fields(
    gateway: Gateway, http: httpx2.AsyncClient, path: str
) -> None:
    response = await http.get(f"{gateway.base}{path}")

    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == gateway.base  # §3.3: the issuer the URL was built from
    oauth = f"{gateway.base}/api/v1/core/oauth"
    for field, path in ENDPOINTS.items():
        assert document[field] == f"{oauth}/{path}", field
    assert document["jwks_uri"] == f"{oauth}/jwks"
    assert document["response_types_supported"] == ["code"]
    assert document["code_challenge_methods_supported"] == ["S256"]  # no "plain"
    assert set(document["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert "none" in document["token_endpoint_auth_methods_supported"]
    assert "none" not in document["introspection_endpoint_auth_methods_supported"]
    assert document["authorization_response_iss_parameter_supported"] is True  # RFC 9207
    assert {*BUILTIN_SCOPES, "uploader"} <= set(document["scopes_supported"])
    assert "ES256" in document["dpop_signing_alg_values_supported"]


async def test_the_endpoints_the_metadata_names_answer(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    document = (await http.get(f"{gateway.base}{AS_METADATA}")).json()

    registered = await http.post(
        document["registration_endpoint"],
        json={"redirect_uris": ["http://127.0.0.1/cb"], "application_type": "native"},
    )
    token = await http.post(document["token_endpoint"], data={"grant_type": "password"})
    authorize = await http.get(document["authorization_endpoint"])

    assert registered.status_code == 201
    assert (token.status_code, token.json()["error"]) == (401, "invalid_client")
    assert authorize.status_code == 400  # an error page: no client_id


async def test_the_key_set_publishes_the_token_signing_key_and_nothing_private(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    document = (await http.get(f"{gateway.base}{AS_METADATA}")).json()

    jwks = (await http.get(document["jwks_uri"])).json()

    header = jws.extract_compact(gateway.token("users", "user").encode()).headers()
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}
    for key in jwks["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & key.keys()


async def test_the_key_set_is_cached_for_less_than_a_rotated_key_waits_to_sign(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    # A verifier honouring the cache lifetime must fetch a rotated key before a replica signs
    # with it (keystore: verify-only for DEFAULT_SIGNS_AFTER_S).
    response = await http.get(f"{gateway.base}/api/v1/core/oauth/jwks")

    directives = dict(
        part.strip().partition("=")[::2] for part in response.headers["cache-control"].split(",")
    )
    assert 0 < int(directives["max-age"]) < DEFAULT_SIGNS_AFTER_S / 2


@pytest.mark.parametrize("server", sorted(AUTH_SERVERS))
async def test_each_server_has_protected_resource_metadata_naming_its_url(
    gateway: Gateway, http: httpx2.AsyncClient, server: str
) -> None:
    response = await http.get(f"{gateway.base}{PRM}/{server}/mcp")

    assert response.status_code == 200
    document = response.json()
    assert document["resource"] == gateway.url(server)  # RFC 9728 §3.3
    assert document["authorization_servers"] == [gateway.base]
    assert document["bearer_methods_supported"] == ["header"]
    policy = AUTH_SERVERS[server]["oauth"]
    if policy.get("scopes"):
        assert document["scopes_supported"] == policy["scopes"]
    dpop = policy.get("dpop", "optional")
    if dpop == "off":
        assert "dpop_bound_access_tokens_required" not in document
    else:
        assert document["dpop_bound_access_tokens_required"] is (dpop == "required")


async def test_an_unknown_server_has_no_resource_metadata(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await http.get(f"{gateway.base}{PRM}/nobody/mcp")

    assert response.status_code == 404


async def test_a_401_leads_a_client_to_the_authorization_server(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    refused = await call_tool(http, gateway.url("users"), "echo")
    assert refused.status_code == 401

    prm = (await http.get(challenge(refused)["resource_metadata"])).json()
    (issuer,) = prm["authorization_servers"]
    parts = urlsplit(issuer)
    metadata = (await http.get(f"{parts.scheme}://{parts.netloc}{AS_METADATA}")).json()

    assert prm["resource"] == gateway.url("users")
    assert metadata["issuer"] == issuer
    registered = await http.post(
        metadata["registration_endpoint"],
        json={"redirect_uris": ["http://127.0.0.1/cb"], "application_type": "native"},
    )
    assert registered.status_code == 201


async def test_a_client_on_another_loopback_name_gets_the_resource_it_used(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    port = urlsplit(gateway.base).port

    response = await http.get(
        f"{gateway.base}{PRM}/users/mcp", headers={"Host": f"localhost:{port}"}
    )

    assert response.json()["resource"] == f"http://localhost:{port}/api/v1/mcp/users/mcp"


async def test_a_forged_host_header_cannot_change_the_resource(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await http.get(f"{gateway.base}{PRM}/users/mcp", headers={"Host": "evil.example"})

    assert response.status_code == 200
    assert response.json()["resource"] == gateway.url("users")
