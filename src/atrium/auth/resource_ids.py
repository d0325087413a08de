"""Resource identifiers (RFC 8707, RFC 9728 §1.2) of the hosted servers.

A hosted server's resource is the URL clients use for it through the gateway,
``{public_url}/api/v1/mcp/{server}/mcp``. Loopback names are one machine: when the public URL
is ``http://localhost:8080``, a client that connected to ``http://127.0.0.1:8080`` names the
same resource, and its token must work.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from atrium.auth.uris import LOOPBACK_HOSTS

_PATH = re.compile(r"^/api/v1/mcp/([a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)/mcp$")
# ``Resources.server_of``'s answers kept: a token's audience is read on every call it makes,
# and is one of a few URLs; past this many distinct ones, the memo starts again.
MEMO_SIZE = 1024
# The AI service's agents API (``atrium.gateway.agents_api``): a resource of its own, so a
# client can ask for a token meant for it alone.
AGENTS_PATH = "/api/v1/agents"


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    default = 443 if scheme == "https" else 80
    return scheme, host, port or default


class Resources:
    def __init__(self, public_url: str) -> None:
        parts = urlsplit(public_url)
        self.public_url = public_url.rstrip("/")
        self._origin = _origin(parts.scheme, (parts.hostname or "").lower(), parts.port)
        self._servers: dict[str, str | None] = {}

    def url_for(self, server: str, origin: str | None = None) -> str:
        """The server's resource URL; on ``origin`` when that names the same place as ours."""
        base = origin if origin is not None and self.same_origin(origin) else self.public_url
        return f"{base}/api/v1/mcp/{server}/mcp"

    def agents_url(self, origin: str | None = None) -> str:
        """The agents API's resource URL; on ``origin`` when that names the same place."""
        base = origin if origin is not None and self.same_origin(origin) else self.public_url
        return f"{base}{AGENTS_PATH}"

    def is_agents_api(self, resource: str) -> bool:
        """Whether a resource URL names the agents API (on any loopback name of ours)."""
        try:
            parts = urlsplit(resource)
        except ValueError:  # "http://[::1": no URL at all
            return False
        return (
            not parts.query
            and not parts.fragment
            and parts.path == AGENTS_PATH
            and self.same_origin(resource)
        )

    def same_origin(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or parts.username or parts.password:
            return False
        theirs = _origin(parts.scheme, (parts.hostname or "").lower(), port)
        if theirs == self._origin:
            return True
        ours = self._origin
        return (
            theirs[0] == ours[0]
            and theirs[2] == ours[2]
            and theirs[1] in LOOPBACK_HOSTS
            and ours[1] in LOOPBACK_HOSTS
        )

    def server_of(self, resource: str) -> str | None:
        """The server a resource URL names, or ``None`` if it names none of ours. A function
        of the URL alone (and our public URL, fixed): remembered, as it is asked on every
        call a token makes (issue 17)."""
        try:
            return self._servers[resource]
        except KeyError:
            pass
        if len(self._servers) >= MEMO_SIZE:
            self._servers.clear()
        named = self._servers[resource] = self._server_of(resource)
        return named

    def _server_of(self, resource: str) -> str | None:
        try:
            parts = urlsplit(resource)
        except ValueError:  # "http://[::1": no URL at all
            return None
        if parts.query or parts.fragment or not self.same_origin(resource):
            return None
        match = _PATH.match(parts.path)
        return match[1] if match else None
