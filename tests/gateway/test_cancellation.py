"""A client that goes away mid-call cancels its tool. In the ``initialize`` era a request
outlives its connection (a stream may be resumed), so the gateway says so: it sends the
backend ``notifications/cancelled`` for the call, on the caller's own backend session."""

from __future__ import annotations

from pathlib import Path

import httpx2
import orjson
import pytest

from atrium.settings import Settings, load_settings
from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, legacy_call_body, legacy_headers, legacy_session
from tests.polling import until


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Bodies up to 1 MiB: past uvicorn's 64 KiB mark, where it pauses reading."""
    (tmp_path / "atrium.yaml").write_text(f"gateway:\n  max_body_bytes: {1024 * 1024}\n")
    return load_settings(tmp_path, environ={})


async def test_a_client_that_disconnects_mid_call_cancels_the_tool(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("tools")
    session = await legacy_session(http, url)
    body = legacy_call_body("slow", {"seconds": 30, "tag": "abandoned"}, id=41)

    async with http.stream("POST", url, content=body, headers=legacy_headers(session)):
        await until(lambda: "abandoned" in backend.witness.started, what="the tool to start")
    await until(lambda: "abandoned" in backend.witness.cancelled, what="the tool to be cancelled")

    (notice,) = [orjson.loads(b) for b in backend.witness.bodies_naming("notifications/cancelled")]
    assert notice["params"]["requestId"] == 41
    sessions = {r.headers.get("mcp-session-id") for r in backend.witness.requests}
    assert len(sessions - {None}) == 1  # the caller's own session, not a new one
    assert "abandoned" not in backend.witness.finished


async def test_a_call_answered_before_the_client_left_is_not_cancelled(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("tools")
    session = await legacy_session(http, url)
    body = legacy_call_body("slow", {"seconds": 0, "tag": "answered"}, id=42)

    response = await http.post(url, content=body, headers=legacy_headers(session))

    assert response.status_code == 200
    assert "answered" in backend.witness.finished
    assert backend.witness.bodies_naming("notifications/cancelled") == []


async def test_a_client_that_sent_a_big_body_and_left_mid_call_cancels_the_tool(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    """A body over uvicorn's 64 KiB buffer mark pauses reading until the app reads it; the
    gateway must read on to see the client go while the call runs."""
    url = gateway.url("tools")
    session = await legacy_session(http, url)
    tag = "big-" + "x" * 300_000
    body = legacy_call_body("slow", {"seconds": 30, "tag": tag}, id=43)

    async with http.stream("POST", url, content=body, headers=legacy_headers(session)):
        await until(lambda: tag in backend.witness.started, what="the tool to start")
    await until(lambda: tag in backend.witness.cancelled, what="the tool to be cancelled")

    assert tag not in backend.witness.finished
