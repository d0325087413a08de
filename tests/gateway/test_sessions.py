"""An ``initialize``-era session belongs to the caller who opened it (issue 19 §8): another
caller holding its id, even with a valid token of its own, can neither use it, nor read its
stream, nor end it; and every such attempt is audited."""

from __future__ import annotations

import httpx2
import pytest

from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    LEGACY,
    Gateway,
    legacy_call_body,
    legacy_headers,
    legacy_session,
)


def auth(gateway: Gateway, subject: str, client_id: str = "client") -> dict[str, str]:
    token = gateway.token("locked", "tools:write", subject=subject, client_id=client_id)
    return {"Authorization": f"Bearer {token}"}


async def alices_session(gateway: Gateway, http: httpx2.AsyncClient, url: str) -> str:
    return await legacy_session(http, url, auth(gateway, "alice"))


@pytest.fixture
async def routed(gateway: Gateway, backend: Backend) -> str:
    await gateway.add_server("locked", port=backend.port, oauth={"required": True})
    return gateway.url("locked")


async def test_another_caller_cannot_use_read_or_end_a_session(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, routed: str
) -> None:
    session = await alices_session(gateway, http, routed)
    mallory = auth(gateway, "mallory")
    stream = {"Accept": "text/event-stream", "MCP-Protocol-Version": LEGACY}

    call = await http.post(
        routed,
        content=legacy_call_body("echo", {"text": "x"}),
        headers={**legacy_headers(session), **mallory},
    )
    read = await http.get(
        routed, headers={**stream, "Mcp-Session-Id": session, "Last-Event-ID": "0", **mallory}
    )
    end = await http.delete(routed, headers={**legacy_headers(session), **mallory})
    still = await http.post(
        routed,
        content=legacy_call_body("echo", {"text": "still mine"}),
        headers={**legacy_headers(session), **auth(gateway, "alice")},
    )

    assert (call.status_code, read.status_code, end.status_code) == (404, 404, 404)
    assert still.status_code == 200, still.text
    assert "still mine" in still.text
    await gateway.audit(still.headers["x-request-id"])  # the last: every earlier one is stored
    refused = [r for r in await gateway.audit_of("locked", 4) if r.subject == "mallory"]
    assert {r.status for r in refused} == {404}
    assert len(refused) == 3


async def test_the_same_user_through_another_client_is_another_caller(
    gateway: Gateway, http: httpx2.AsyncClient, routed: str
) -> None:
    session = await alices_session(gateway, http, routed)

    response = await http.post(
        routed,
        content=legacy_call_body("echo", {"text": "x"}),
        headers={**legacy_headers(session), **auth(gateway, "alice", client_id="other-app")},
    )

    assert response.status_code == 404


@pytest.mark.parametrize(
    "forgery", ["backend id", "truncated", "one byte changed", "not base64", "non-ascii", "huge"]
)
async def test_a_session_id_not_sealed_for_its_caller_is_unknown(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, routed: str, forgery: str
) -> None:
    session = await alices_session(gateway, http, routed)
    backend_id = next(
        r.headers["mcp-session-id"]
        for r in backend.witness.requests
        if "mcp-session-id" in r.headers
    )
    flipped = session[:-2] + ("A" if session[-2] != "A" else "B") + session[-1]
    presented = {
        "backend id": backend_id,
        "truncated": session[:-4],
        "one byte changed": flipped,
        "not base64": session + "!*",
        "non-ascii": session[:10] + "\u00e9\u00e9",
        "huge": session * 40,
    }[forgery]
    headers: dict[str, str | bytes] = {**legacy_headers("x"), **auth(gateway, "alice")}
    headers["Mcp-Session-Id"] = presented.encode("latin-1")  # raw bytes, as an attacker sends

    response = await http.post(
        routed,
        content=legacy_call_body("echo", {"text": "x"}),
        headers=headers,  # type: ignore[arg-type]  # str and raw bytes mixed, as an attacker may
    )

    assert response.status_code == 404
    assert backend_id not in session


async def test_an_owners_get_and_delete_are_audited_like_a_post(
    gateway: Gateway, http: httpx2.AsyncClient, routed: str
) -> None:
    session = await alices_session(gateway, http, routed)
    alice = auth(gateway, "alice")
    headers = {"Accept": "text/event-stream", "MCP-Protocol-Version": LEGACY}

    async with http.stream(
        "GET", routed, headers={**headers, "Mcp-Session-Id": session, **alice}
    ) as got:
        assert got.status_code == 200
    ended = await http.delete(routed, headers={**legacy_headers(session), **alice})

    assert ended.status_code == 200
    await gateway.audit(ended.headers["x-request-id"])  # the last: every earlier one is stored
    records = await gateway.audit_of("locked", 3)  # initialize, GET, DELETE
    mine = {r.method: r.status for r in records if r.subject == "alice"}
    assert mine["DELETE"] == 200
    assert mine["GET"] in (200, 499)  # a stream ends when its client goes away
