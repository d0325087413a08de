"""URI rules shared by OAuth, the transport guard and the bridge (RFC 3986, RFC 8252 §7.3).

"Loopback" means three things here, each on purpose, and this is the one place that says so:

- ``LOOPBACK_HOSTS``: the names a client may use for this machine where names are compared
  exactly (loopback redirects, resource origins, ``Origin`` headers, the address a bridge binds),
  spelled as ``urlsplit(...).hostname`` gives them: lower case, IPv6 without brackets.
  ``LOOPBACK_AUTHORITIES`` are the same hosts as a ``Host`` header or URL authority writes
  them (``[::1]``).
- :func:`is_loopback`: ``localhost`` or any loopback address (127.0.0.0/8, ``::1``, also as
  IPv4-mapped IPv6); what an address must be before Atrium fetches from it over plain http.
- :func:`is_this_machine`: anything a browser reaches on this machine, adding ``*.localhost``
  (RFC 6761 §6.3) and the unspecified address (0.0.0.0). Used to refuse, so it errs wide.

A redirect URI is split once, by :func:`split_redirect_uri`, for validating registrations and for
matching at the authorization endpoint alike; a Client ID Metadata Document's URL by
:func:`split_metadata_url`, whose rules (draft-ietf-oauth-client-id-metadata-document §3) are
stricter.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
LOOPBACK_AUTHORITIES = frozenset({"localhost", "127.0.0.1", "[::1]"})
MAX_REDIRECT_URI_LENGTH = 2000
MAX_METADATA_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 3986 §2: anything else would have to be percent-encoded, and refusing it keeps the URL
# safe to echo in an error_description (RFC 6749 §5.2 forbids '"' and '\').
_URL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
# Percent-encoded dots count: WHATWG URL parsers treat them as dot segments.
_DOT_SEGMENTS = frozenset({".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"})


class UriError(ValueError):
    """Why a URI is refused, as a phrase that follows the URI ("contains a space")."""


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a hostname, IPv6 unbracketed) is one of ``LOOPBACK_HOSTS``."""
    return host.lower() in LOOPBACK_HOSTS


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address literal."""
    return host.lower() == "localhost" or _ip_matches(
        host, lambda ip: ip.is_loopback, unmapped=True
    )


def is_this_machine(host: str) -> bool:
    """Whether a browser that follows a URL on ``host`` reaches this machine."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True  # RFC 6761 §6.3; browsers resolve every *.localhost to loopback
    # 0.0.0.0 reaches this host's listeners too, on Linux and macOS.
    return _ip_matches(host, lambda ip: ip.is_loopback or ip.is_unspecified, unmapped=True)


def split_redirect_uri(uri: str) -> SplitResult:
    """``uri`` split, or :class:`UriError` unless it is an absolute URI without fragment or
    userinfo (RFC 6749 §3.1.2), of at most ``MAX_REDIRECT_URI_LENGTH`` printable ASCII."""
    # RFC 3986 URIs are printable ASCII; whitespace or control characters are how a scheme
    # like "java\tscript:" slips past a comparison that a browser then tidies away.
    if not (0 < len(uri) <= MAX_REDIRECT_URI_LENGTH and uri.isascii() and uri.isprintable()):
        raise UriError(f"must be 1 to {MAX_REDIRECT_URI_LENGTH} printable ASCII characters")
    if " " in uri:
        raise UriError("contains a space")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        raise UriError("is not a valid URI") from None
    if not parts.scheme or parts.fragment or "#" in uri or parts.username is not None:
        raise UriError("must be absolute, without fragment or userinfo")
    return parts


def loopback_redirect_key(uri: str) -> tuple[str, str, str] | None:
    """(host, path, query) of an http loopback redirect URI, port left out; else ``None``.

    Two loopback redirects with equal keys are the same redirect (RFC 8252 §7.3: a native app
    listens on whatever port it is given at each authorization).
    """
    try:
        parts = split_redirect_uri(uri)
    except UriError:
        return None
    host = parts.hostname or ""
    if parts.scheme != "http" or not is_loopback_host(host):
        return None
    return host, parts.path, parts.query


def split_metadata_url(url: str, *, allow_http: bool) -> SplitResult:
    """``url`` split, or :class:`UriError` unless it may name a Client ID Metadata Document:
    https (or http when ``allow_http``), a host and a path; no fragment, user info or dot
    segments (draft §3). The reasons are sentences of their own ("the URL has no path")."""
    parts = _split_url_chars(url)
    if parts is None:
        raise UriError("the URL is malformed")
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        raise UriError("the URL must use https")
    if not parts.hostname:
        raise UriError("the URL has no host")
    if "@" in parts.netloc:
        raise UriError("the URL has user info")
    if "#" in url:
        raise UriError("the URL has a fragment")
    if parts.path in ("", "/"):
        raise UriError("the URL has no path")
    if any(segment.lower() in _DOT_SEGMENTS for segment in parts.path.split("/")):
        raise UriError("the URL has dot segments")
    return parts


def _split_url_chars(url: str) -> SplitResult | None:
    if len(url) > MAX_METADATA_URL_LENGTH or not set(url) <= _URL_CHARS:
        return None
    try:
        parts = urlsplit(url)
        return parts if parts.port != 0 else None  # .port raises on a malformed port
    except ValueError:
        return None


def _ip_matches(host: str, test: Callable[[IPAddress], bool], *, unmapped: bool = False) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if unmapped and isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return test(ip)
