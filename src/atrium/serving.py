"""Serving HTTP from inside an ``atrium`` process: what the gateway, the toolkit servers and the
stdio bridge share, so none of them imports another to get it: the port check, and uvicorn
embedded one way."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp

from atrium.errors import AtriumError


class PortInUse(AtriumError):
    """Something else already listens on the port a server was to listen on."""


def ensure_port_free(port: int, what: str, host: str = "127.0.0.1") -> None:
    """Refuse to start ``what`` on a port something else listens on, naming both."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server will: a port held only by TIME_WAIT connections is free to listen on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} is already in use; {what} cannot start") from None
            raise


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside a process that owns SIGTERM and SIGINT: it installs no handlers of its own.

    uvicorn's own would catch them, stop serving, and re-raise them once stopped, so the process
    would die by its own signal (not exit 0), and could not stop what it runs (a supervisor, a
    child) after its HTTP server. Whoever serves sets ``should_exit`` (``handle_exit``) instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_config(
    app: ASGIApp,
    *,
    timeout_s: int,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: Literal["on", "off"] = "on",
    **options: Any,
) -> uvicorn.Config:
    """``app`` configured as every ``atrium`` process serves HTTP (under ``EmbeddedServer``);
    ``options`` go to ``uvicorn.Config`` (``log_level``, the forwarded-headers options).

    Logging is the CLI's, configured once. No access log: a request line carries its query
    string, and a redirect aimed at this port would leave an authorization code there (issue 19
    item 11); the gateway audits every request that reaches a server. No WebSocket: MCP is plain
    HTTP. Requests in flight get ``timeout_s`` to finish once the server stops.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ws="none",
        lifespan=lifespan,
        timeout_graceful_shutdown=timeout_s,
        **options,
    )
