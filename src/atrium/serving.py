"""Serving HTTP from inside an ``atrium`` process: what the gateway, the toolkit servers and the
stdio bridge share, so none of them imports another to get it."""

from __future__ import annotations

import errno
import socket

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
