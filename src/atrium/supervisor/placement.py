"""Which host runs a hosted server, and on which address it listens there.

One registry serves every host of a scaled-out Atrium, and each host's supervisor (``atrium
infra services start mcp``, or ``atrium start``) runs the servers that are its own:

* a server without ``backend:`` runs on every host whose supervisor is asked to run it, on
  loopback, for the gateway beside it (``gateway.backend_host``, loopback by default);
* a server whose ``backend.host`` names this machine runs here, listening on that address
  (``--host``, or ``{host}`` in a ``command``), so that gateways on other hosts reach it;
* a server whose ``backend.host`` names another machine is left to that machine's supervisor
  (or to systemd, Kubernetes, anything that runs it there): this one never starts it.

"This machine" is told by the kernel, not by a list to keep up to date: the name is resolved
and an address is this machine's exactly when a socket can be bound to it. A name that does
not resolve here is another machine's.
"""

from __future__ import annotations

import contextlib
import socket

from atrium.registry.schema import HttpServer, StdioServer

LOOPBACK = "127.0.0.1"


def listen_address(config: HttpServer | StdioServer) -> str | None:
    """The address this host runs ``config`` on, or ``None`` when another host runs it."""
    if config.backend is None:
        return LOOPBACK
    return local_address(config.backend.host)


def elsewhere(config: HttpServer | StdioServer) -> str | None:
    """The host that runs ``config`` when it is not this one (for messages), else ``None``."""
    if config.backend is None or listen_address(config) is not None:
        return None
    return config.backend.host


def local_address(host: str) -> str | None:
    """An address of this machine that ``host`` resolves to, or ``None``."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for family, kind, _, _, address in found:
        with contextlib.suppress(OSError), socket.socket(family, kind) as probe:
            probe.bind((address[0], 0))
            return str(address[0])
    return None
