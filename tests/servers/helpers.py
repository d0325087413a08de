"""Serving an MCP server on a real loopback socket, in-process or as a subprocess.

The SDK's client speaks HTTP through a real connection (``httpx.ASGITransport`` would buffer
the SSE streams), so even in-process tests bind 127.0.0.1 on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp.server.mcpserver import MCPServer

from atrium.auth.assertion import AssertionVerifier
from atrium.servers.app import create_app
from atrium.servers.shutdown import GracefulServer
from tests.polling import until, wait_until

DEADLINE_S = 30.0


@asynccontextmanager
async def serving(
    server: MCPServer[Any], callers: AssertionVerifier | None = None
) -> AsyncIterator[str]:
    """Serve ``server`` in this event loop; yield its base URL; stop it on exit.

    ``callers`` checks the gateway's caller assertions; without it the server serves anyone."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    uvicorn_server = GracefulServer(
        create_app(server, callers=callers),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_s=5,
    )
    task = asyncio.create_task(uvicorn_server.serve(sockets=[listener]))
    try:
        await _started(uvicorn_server, task)
        yield f"http://127.0.0.1:{port}"
    finally:
        uvicorn_server.should_exit = True
        await task
        listener.close()


async def _started(server: GracefulServer, task: asyncio.Task[None]) -> None:
    def started() -> bool:
        if task.done():
            task.result()  # raises what stopped it
            raise AssertionError("the server stopped before it started")
        return server.started

    await until(started, what="the server to start", timeout_s=DEADLINE_S, interval=0.01)


@contextmanager
def running(argv: Sequence[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` (a server listening on ``port``), wait for ``/health``, kill it on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATRIUM_")}
    with log.open("wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(process, port, log)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def wait_healthy(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    with httpx2.Client() as http:

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()}")
            try:
                return http.get(f"http://127.0.0.1:{port}/health").status_code == 200
            except httpx2.TransportError:
                return False

        wait_until(healthy, what="/health", timeout_s=DEADLINE_S, detail=log.read_text)


def wait_for_file(path: Path) -> None:
    """Wait until another process has created ``path``."""
    wait_until(path.exists, what=f"{path} to appear", timeout_s=DEADLINE_S, interval=0.01)
