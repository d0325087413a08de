"""Which redirect URIs a client may use (RFC 6749 §3.1.2, RFC 8252 §7, OAuth 2.1 §2.3.1).

One validator for every client that names its own: dynamically registered ones (RFC 7591)
and Client ID Metadata Documents alike. A ``web`` client redirects to https; a ``native`` one
to http on loopback (RFC 8252 §7.3) or to a private-use scheme (§7.1), never to a scheme a
browser would run or read locally (``javascript:``, ``data:``, ``file:``).

A redirect that reaches this host must not name a port Atrium itself serves (the gateway's,
every stored server's): the authorization code would land in that server's request log
(issue 19 item 11). Loopback redirects may change port at every authorization (RFC 8252 §7.3),
so this is checked at registration and again at the authorization endpoint. The ports in use
are checked rather than all of ``mcp.port_range``: a range may overlap the ephemeral ports
native clients listen on for their redirect (``1024-65535`` does), and refusing those would
fail sign-ins at random.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from atrium.auth.errors import invalid_redirect_uri, invalid_request, shown
from atrium.auth.uris import UriError, is_loopback_host, is_this_machine, split_redirect_uri

# Schemes that browsers execute, read locally or treat as their own: never a redirect.
_DENIED_SCHEMES = frozenset(
    {"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "view-source"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def check_redirect(uri: str, application_type: str, *, dev_mode: bool) -> None:
    """Raise ``invalid_redirect_uri`` unless a client of ``application_type`` may use ``uri``.

    ``dev_mode`` lets web clients use http loopback too (local development).
    """
    parts = _parts(uri)
    loopback = parts.scheme == "http" and is_loopback_host(parts.hostname or "")
    if parts.scheme == "https" and parts.hostname:
        return
    if loopback and (application_type == "native" or dev_mode):
        return
    if application_type == "native" and parts.scheme not in ("http", "https"):
        if parts.scheme in _DENIED_SCHEMES:
            raise invalid_redirect_uri(f"'{shown(uri)}' uses a scheme that cannot be a redirect")
        return  # a private-use scheme (RFC 8252 §7.1)
    raise invalid_redirect_uri(
        f"'{shown(uri)}' is not allowed for a {shown(application_type)} client "
        "(web: https; native: http loopback or a private-use scheme)"
    )


def implied_application_type(uri: str) -> Literal["native", "web"]:
    """The ``application_type`` that ``uri`` implies for a client that names none: http
    loopback (RFC 8252 §7.3) or a private-use scheme (§7.1) is native, anything else web.
    A malformed ``uri`` raises ``invalid_redirect_uri``."""
    parts = _parts(uri)
    if parts.scheme == "https":
        return "web"
    if parts.scheme == "http":
        return "native" if is_loopback_host(parts.hostname or "") else "web"
    return "native"  # a scheme that cannot be a redirect is refused by check_redirect


def check_not_own_port(uri: str, own: Collection[int], *, registering: bool) -> None:
    """Refuse a redirect to this host on a port Atrium serves: ``invalid_redirect_uri`` at
    registration, ``invalid_request`` at the authorization endpoint (RFC 6749 §4.1.2.1)."""
    port = local_port(uri)
    if port is not None and port in own:
        description = f"'{shown(uri)}' names port {port}, which Atrium serves itself"
        raise invalid_redirect_uri(description) if registering else invalid_request(description)


def local_port(url: str) -> int | None:
    """The port an http(s) ``url`` reaches on this host, or None if it goes elsewhere."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None  # malformed: whoever validates it refuses it with their own reason
    if parts.scheme not in _DEFAULT_PORTS or not is_this_machine(parts.hostname or ""):
        return None
    return port


def _parts(uri: str) -> SplitResult:
    try:
        return split_redirect_uri(uri)
    except UriError as problem:
        raise invalid_redirect_uri(f"'{shown(uri)}' {problem}") from None
