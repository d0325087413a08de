"""Speaking to a backend as the gateway does: with a caller assertion signed by the project's
caller key (``atrium.auth.assertion``), for tests that reach a backend's own port."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from atrium.auth.assertion import HEADER, AssertionSigner, public_keys


def assertion(
    state_dir: Path,
    server: str,
    *,
    subject: str | None = "ada",
    scopes: frozenset[str] = frozenset({"tools:write"}),
) -> dict[str, str]:
    """The header a gateway with ``state_dir``'s keys would attach for ``server`` (once)."""
    signer = AssertionSigner.load(state_dir, public_keys(state_dir)["issuer"])
    value = signer.sign(
        server=server,
        subject=subject,
        client_id="test-client" if subject else None,
        scopes=scopes,
        origin="external",
        request_id=uuid.uuid4().hex,
    )
    return {HEADER: value}


@asynccontextmanager
async def vouched_client(
    url: str,
    state_dir: Path | None,
    server: str,
    *,
    subject: str | None = "ada",
    scopes: frozenset[str] = frozenset({"tools:write"}),
    mode: str = "auto",
) -> AsyncIterator[Client]:
    """The official client; each request it sends carries a fresh assertion, as the gateway's
    do (a backend takes each once); ``state_dir`` None sends none."""

    async def vouch(request: httpx2.Request) -> None:
        if state_dir is not None:
            request.headers.update(assertion(state_dir, server, subject=subject, scopes=scopes))

    async with httpx2.AsyncClient(timeout=30, event_hooks={"request": [vouch]}) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode) as client:
            yield client
