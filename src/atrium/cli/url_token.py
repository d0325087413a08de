"""The token a command sends to the MCP endpoint its ``--url`` names (issue 18: scale-out).

Scaled out, ``--url`` reaches one gateway replica among several, and those serve servers that
want a token like the local gateway's do. Which token, in this order:

1. ``ATRIUM_TOKEN``, when set: a token the person got for that gateway (``atrium admin token
   issue`` on its project, or an OAuth sign-in), sent to whatever ``--url`` names.
2. The operator's own short-lived token (``atrium.auth.operator``), signed with this project's
   key, for the server the path names (``/api/v1/mcp/<server>/mcp``), but only to a host this
   project's gateway answers to: the names its transport guard lets in (loopback, the public
   URL's host, ``gateway.host``, ``gateway.allowed_hosts``). Every replica of the project shares
   them, and a gateway elsewhere is not handed an admin token by a typo in a URL.
3. A URL of another shape is a server reached directly (a backend in development, someone
   else's MCP server): nothing is sent, as before.

A gateway endpoint on a host that is not the project's, or a folder without the project's store
(where signing would make a key of its own), gets neither: the command stops and says what to
do instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from atrium.errors import AtriumError, UsageError
from atrium.settings import Settings

TOKEN_VARIABLE = "ATRIUM_TOKEN"
SQLITE = "sqlite+aiosqlite:///"
_ENDPOINT_PATH = re.compile(r"^/api/v1/mcp/(?P<server>[^/]+)/mcp/?$")


def url_headers(settings: Settings, url: str) -> dict[str, str]:
    """The ``Authorization`` header for ``url``, if any (module docstring)."""
    token = settings.environ.get(TOKEN_VARIABLE, "").strip()
    if token:
        return {"Authorization": f"Bearer {token}"}
    parts = urlsplit(url)
    found = _ENDPOINT_PATH.match(parts.path)
    if found is None:
        return {}
    server = unquote(found["server"])
    host = (parts.hostname or "").lower()
    if host not in _gateway_hosts(settings):
        raise UsageError(
            f"--url: {parts.netloc or url!r} is not a host this project's gateway answers to"
            " (gateway.public_url, gateway.host, gateway.allowed_hosts), so the operator's"
            f" token is not sent there. Set {TOKEN_VARIABLE} to a token of that gateway"
            " (`atrium admin token issue` in its project), or, for a replica of this project,"
            " list the host in gateway.allowed_hosts"
        )
    return _operator_headers(settings, server)


def _gateway_hosts(settings: Settings) -> frozenset[str]:
    """The host names this project's gateway serves (its transport guard's list), without
    brackets, as ``urlsplit`` gives a URL's host."""
    from atrium.gateway.guard import Guard

    return frozenset(host.strip("[]") for host in Guard.from_settings(settings).hosts)


def _operator_headers(settings: Settings, server: str) -> dict[str, str]:
    from atrium.auth.operator import operator_token

    if not _has_store(settings):
        # Signing would open a new store, and with it a new key no gateway accepts.
        raise UsageError(
            f"--url: {settings.project_dir} has no store of an Atrium project to take the"
            " operator's signing key from: run the command in the gateway's project"
            f" (--project DIR), or set {TOKEN_VARIABLE}"
        )
    try:
        token = operator_token(settings, server)
    except AtriumError as exc:
        raise AtriumError(
            f"--url: cannot sign the operator's token ({exc}); set {TOKEN_VARIABLE} instead"
        ) from None
    return {"Authorization": f"Bearer {token}"} if token else {}


def _has_store(settings: Settings) -> bool:
    """Whether the project's store exists: a server's, or a SQLite file made before."""
    url = settings.database_url
    if not url.startswith(SQLITE):
        return True
    return Path(url.removeprefix(SQLITE)).is_file()
