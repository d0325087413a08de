"""``atrium bridge <url>``: a stdio MCP server that forwards to a remote Atrium endpoint.

For clients that only start stdio servers (seed 003's Claude Desktop example): the client runs
``atrium bridge https://atrium.example.com/api/v1/mcp/atrium/mcp``; the bridge signs in
(``atrium.client.oauth``: the browser once, DPoP-bound tokens after), opens one MCP session to
the remote server and mirrors it on stdin/stdout with the same forwarding the supervisor's
stdio bridge uses the other way round (``atrium.bridge.proxy``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext
from mcp_types import Implementation

from atrium.__about__ import __version__
from atrium.bridge.notifications import Fanout
from atrium.bridge.proxy import build_proxy
from atrium.bridge.upstream import Upstream
from atrium.client.credentials import CredentialStore
from atrium.client.oauth import DpopAuth

logger = logging.getLogger(__name__)

CLIENT_INFO = Implementation(name="atrium-bridge", version=__version__)
TIMEOUT = httpx2.Timeout(30.0, read=300.0)


def credentials_path(folder: Path, url: str) -> Path:
    """One file per remote endpoint: its host and a digest of the whole URL."""
    host = urlsplit(url).hostname or "server"
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
    return folder / f"{host}-{digest}.json"


async def run_bridge(
    url: str, store: CredentialStore, open_browser: Callable[[str], object]
) -> None:
    auth = DpopAuth(store, open_browser)
    async with (
        httpx2.AsyncClient(auth=auth, timeout=TIMEOUT) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        read_stream, write_stream = streams[0], streams[1]
        dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
            read_stream, write_stream
        )
        upstream = Upstream(dispatcher)
        fanout = Fanout(upstream)
        async with ClientSession(
            dispatcher=dispatcher, message_handler=fanout.on_child_message, client_info=CLIENT_INFO
        ) as session:
            remote = await session.initialize()
            logger.info("bridging %s (%s)", url, remote.server_info.name)
            server = build_proxy(remote, upstream, fanout)
            async with stdio_server() as (local_read, local_write):
                await server.run(local_read, local_write, server.create_initialization_options())
