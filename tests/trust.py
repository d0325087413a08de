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
    """The header a gateway with ``state_dir``'s keys would attach for ``server``."""
    signer = AssertionSigner(state_dir, public_keys(state_dir)["issuer"])
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
    url: str, headers: dict[str, str], *, mode: str = "auto"
) -> AsyncIterator[Client]:
    """The official client, every request carrying ``headers`` (an assertion)."""
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode) as client:  # type: ignore[arg-type]
            yield client
