"""The gateway vouches for every caller it forwards: a signed caller assertion per request,
for the server's name, naming who calls; only the gateway's own reaches the backend."""

from __future__ import annotations

import httpx2

from atrium.auth.assertion import HEADER, PUBLIC_FILE, AssertionVerifier, CallerIdentity
from atrium.auth.operator import OPERATOR_CLIENT_ID
from atrium.settings import Settings
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, call_body, call_modern, list_body, modern_headers

KEY = HEADER.lower()


def vouched(settings: Settings, backend: Backend, server: str) -> CallerIdentity:
    """The identity in the newest assertion the backend received, checked as a backend does."""
    verifier = AssertionVerifier.load(settings.state_dir / PUBLIC_FILE, server)
    return verifier.verify(backend.witness.requests[-1].headers.get(KEY))


async def test_a_signed_in_callers_identity_reaches_the_backend(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, settings: Settings
) -> None:
    token = gateway.token("tools", "tools:write", subject="ada", client_id="cursor")
    headers = {**modern_headers("tools/call", "echo"), "Authorization": f"Bearer {token}"}

    await call_modern(http, gateway.url("tools"), "echo", {"text": "hi"})
    anonymous = vouched(settings, backend, "tools")
    response = await http.post(
        gateway.url("tools"), content=call_body("echo", {"text": "hi"}), headers=headers
    )
    signed_in = vouched(settings, backend, "tools")

    assert response.status_code == 200, response.text
    assert (anonymous.subject, anonymous.client_id, anonymous.origin) == (None, None, "external")
    assert (signed_in.subject, signed_in.client_id) == ("ada", "cursor")
    assert signed_in.scopes == {"tools:write"}
    assert signed_in.origin == "external"
    assert signed_in.request_id == response.headers["x-request-id"]


async def test_atriums_own_cli_is_vouched_for_as_in_app(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, settings: Settings
) -> None:
    token = gateway.token("tools", "admin", subject="operator:ada", client_id=OPERATOR_CLIENT_ID)

    response = await http.post(
        gateway.url("tools"),
        content=list_body(),
        headers={**modern_headers("tools/list"), "Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 200, response.text
    assert vouched(settings, backend, "tools").origin == "in-app"


async def test_an_assertion_sent_by_the_client_never_reaches_the_backend(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, settings: Settings
) -> None:
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
    headers = {**modern_headers("tools/list"), HEADER: forged}

    response = await http.post(gateway.url("tools"), content=list_body(), headers=headers)

    assert response.status_code == 200, response.text
    received = [v for k, v in backend.witness.requests[-1].headers.items() if k == KEY]
    assert received != [forged]
    assert vouched(settings, backend, "tools").subject is None


async def test_each_request_gets_its_own_assertion_for_its_own_server(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, settings: Settings
) -> None:
    await call_modern(http, gateway.url("tools"), "echo", {"text": "one"})
    first = backend.witness.requests[-1].headers[KEY]
    await call_modern(http, gateway.url("guarded"), "echo", {"text": "two"})
    second = backend.witness.requests[-1].headers[KEY]

    assert first != second
    assert vouched(settings, backend, "guarded").server == "guarded"
    only_tools = AssertionVerifier.load(settings.state_dir / PUBLIC_FILE, "tools")
    assert only_tools.verify(first).server == "tools"


async def test_a_remote_server_gets_the_identity_only_when_its_yaml_asks(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, settings: Settings
) -> None:
    await gateway.add_server("faraway", transport="remote", url=backend.url)
    await gateway.add_server("trusted", transport="remote", url=backend.url, forward_identity=True)

    await call_modern(http, gateway.url("faraway"), "echo", {"text": "private"})
    sent_to_faraway = backend.witness.requests[-1].headers
    await call_modern(http, gateway.url("trusted"), "echo", {"text": "shared"})

    assert KEY not in sent_to_faraway
    assert vouched(settings, backend, "trusted").server == "trusted"


async def test_the_openapi_bridge_vouches_for_its_caller_too(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, settings: Settings
) -> None:
    token = gateway.token("tools", "tools:write", subject="grace")

    response = await http.post(
        f"{gateway.base}/api/v1/mcp/tools/tools/echo",
        json={"text": "over REST"},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 200, response.text
    assert vouched(settings, backend, "tools").subject == "grace"
