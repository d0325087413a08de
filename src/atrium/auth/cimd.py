"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP
authorization spec 2025-11-25, "Client ID Metadata Documents"): a client that never registered
uses as ``client_id`` the HTTPS URL of a JSON document with its RFC 7591 metadata.

Anyone can name such a URL, so ``MetadataFetcher`` guards against SSRF (draft, Security
Considerations): it resolves the host itself, refuses addresses that are not globally routable,
connects only to the addresses it checked (no DNS rebinding), follows no redirect, reads at most
``max_bytes`` and stops after ``timeout_s``. Documents are validated (draft §4.1) and cached for
their ``Cache-Control: max-age``, bounded. Failures are ``invalid_client`` naming the problem.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import string
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import SplitResult, urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from atrium.auth.errors import OAuthError, invalid_client, shown
from atrium.auth.redirects import check_redirect

Resolve = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 3986 §2: anything else would have to be percent-encoded, and refusing it keeps the URL
# safe to echo in an error_description (RFC 6749 §5.2 forbids '"' and '\').
_URL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
_MAX_URL_LENGTH = 2048
# Percent-encoded dots count: WHATWG URL parsers treat them as dot segments.
_DOT_SEGMENTS = frozenset({".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"})

_SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})
_URI_FIELDS = ("logo_uri", "client_uri", "tos_uri", "policy_uri", "jwks_uri")
_TEXT_FIELDS = ("client_name", "scope", "software_id", "software_version")
_STRING_FIELDS = (*_URI_FIELDS, *_TEXT_FIELDS, "application_type", "token_endpoint_auth_method")

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SPECIAL_USE: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("unspecified", lambda ip: ip.is_unspecified),
    ("loopback", lambda ip: ip.is_loopback),
    ("link-local", lambda ip: ip.is_link_local),
    ("multicast", lambda ip: ip.is_multicast),
    ("shared address space (CGNAT)", lambda ip: ip in _CGNAT),
    ("reserved", lambda ip: ip.is_reserved),
    ("private", lambda ip: ip.is_private),
    ("not globally routable", lambda ip: not ip.is_global),
)

_MIN_TTL_S = 60.0
# Anyone can make us fetch a document, so the cache must not grow without bound.
_MAX_CACHED = 1024
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_REQUEST_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}


@dataclass(frozen=True)
class ClientDocument:
    """A validated client metadata document (RFC 7591 §2 field names)."""

    client_id: str
    client_name: str | None
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    token_endpoint_auth_method: str
    scope: str | None
    application_type: str
    logo_uri: str | None
    client_uri: str | None
    raw: Mapping[str, Any] = field(compare=False)


class _Refused(Exception):
    """One reason to refuse a document; ``fetch`` prefixes it with the URL."""


def is_metadata_client_id(client_id: str, *, dev_mode: bool = False) -> bool:
    """Whether ``client_id`` names a metadata document rather than a registered client."""
    try:
        parts = _parse_url(client_id, allow_http=dev_mode)
    except _Refused:
        return False
    return parts.scheme == "https" or _is_loopback(parts.hostname or "")


def _split(url: str) -> SplitResult | None:
    if len(url) > _MAX_URL_LENGTH or not set(url) <= _URL_CHARS:
        return None
    try:
        parts = urlsplit(url)
        return parts if parts.port != 0 else None  # .port raises on a malformed port
    except ValueError:
        return None


def _parse_url(url: str, *, allow_http: bool) -> SplitResult:
    # Draft §3: path required; no fragment, user info, or dot segments.
    parts = _split(url)
    if parts is None:
        raise _Refused("the URL is malformed")
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        raise _Refused("the URL must use https")
    if not parts.hostname:
        raise _Refused("the URL has no host")
    if "@" in parts.netloc:
        raise _Refused("the URL has user info")
    if "#" in url:
        raise _Refused("the URL has a fragment")
    if parts.path in ("", "/"):
        raise _Refused("the URL has no path")
    if any(segment.lower() in _DOT_SEGMENTS for segment in parts.path.split("/")):
        raise _Refused("the URL has dot segments")
    return parts


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    ip = _ip(host)
    return host == "localhost" or (ip is not None and ip.is_loopback)


def _address_problem(address: str, *, allow_loopback: bool) -> str | None:
    ip = _ip(address)
    if ip is None:
        return f"address {shown(address)} is not an IP address"
    # An IPv6 address that embeds an IPv4 one reaches that IPv4 host.
    if isinstance(ip, ipaddress.IPv6Address):
        nat64 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None
        ip = ip.ipv4_mapped or ip.sixtofour or nat64 or ip
    if allow_loopback and ip.is_loopback:
        return None
    kind = next((name for name, applies in _SPECIAL_USE if applies(ip)), None)
    return None if kind is None else f"address {address} is {kind}"


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _PinnedResolver(AbstractResolver):
    """Answers only for the host that was checked, and only with the addresses checked."""

    def __init__(self, host: str, addresses: list[str]) -> None:
        self._host = host
        self._addresses = [(a, socket.AF_INET6 if ":" in a else socket.AF_INET) for a in addresses]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.lower() != self._host:
            raise OSError(f"{host} is not the host that was checked")
        return [
            ResolveResult(hostname=host, host=a, port=port, family=f, proto=0, flags=_NUMERIC)
            for a, f in self._addresses
        ]

    async def close(self) -> None:
        pass


def _check_response(response: aiohttp.ClientResponse) -> None:
    status = response.status
    if 300 <= status < 400:
        raise _Refused(f"answered with a redirect (status {status}), which is not followed")
    if status != 200:
        raise _Refused(f"answered status {status}, expected 200")
    content_type = response.headers.get("Content-Type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise _Refused(f"content type is '{shown(content_type)}', expected application/json")


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    body = bytearray()
    while chunk := await response.content.read(max_bytes + 1 - len(body)):
        body += chunk
        if len(body) > max_bytes:
            raise _Refused(f"larger than {max_bytes} bytes")
    return bytes(body)


def _parse_document(url: str, body: bytes, *, dev_mode: bool = False) -> ClientDocument:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Refused("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _Refused("the body is not a JSON object")
    if wrong := [name for name in _STRING_FIELDS if not isinstance(data.get(name, ""), str)]:
        raise _Refused(f"{wrong[0]} is not a string")
    _check_identity(url, data)
    application_type = _one_of(data, "application_type", {"native", "web"}, "native")
    return ClientDocument(
        client_id=url,
        client_name=data.get("client_name"),
        redirect_uris=_redirect_uris(data, application_type, dev_mode=dev_mode),
        grant_types=_subset(data, "grant_types", {"authorization_code", "refresh_token"}),
        response_types=_subset(data, "response_types", {"code"}),
        token_endpoint_auth_method=_one_of(data, "token_endpoint_auth_method", {"none"}, "none"),
        scope=data.get("scope"),
        application_type=application_type,
        logo_uri=data.get("logo_uri"),
        client_uri=data.get("client_uri"),
        raw=MappingProxyType(data),
    )


def _check_identity(url: str, data: dict[str, Any]) -> None:
    # Draft §4.1: simple string comparison (RFC 3986 §6.2.1).
    if "client_id" not in data:
        raise _Refused("the document has no client_id")
    if data["client_id"] != url:
        named = shown(data["client_id"])
        raise _Refused(f"client_id in the document ('{named}') differs from the URL")
    # Draft §4.1: a document is public, so it cannot carry or imply a shared secret.
    for name in ("client_secret", "client_secret_expires_at"):
        if name in data:
            raise _Refused(f"the document contains {name}; shared secrets are not allowed")
    method = data.get("token_endpoint_auth_method")
    if method in _SECRET_METHODS:
        raise _Refused(f"token_endpoint_auth_method {method} needs a shared secret, not allowed")


def _string_list(data: dict[str, Any], name: str) -> tuple[str, ...]:
    if name not in data:
        raise _Refused(f"the document has no {name}")
    value = data[name]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _Refused(f"{name} is not a non-empty list of strings")
    return tuple(value)


def _redirect_uris(
    data: dict[str, Any], application_type: str, *, dev_mode: bool
) -> tuple[str, ...]:
    uris = _string_list(data, "redirect_uris")
    for uri in uris:
        # A document is trusted no more than a registration (``redirects``; ports are checked
        # at the authorization endpoint, as every client's are).
        try:
            check_redirect(uri, application_type, dev_mode=dev_mode)
        except OAuthError as error:
            raise _Refused(f"redirect URI {error.description}") from None
    return uris


def _subset(data: dict[str, Any], name: str, allowed: set[str]) -> tuple[str, ...]:
    # RFC 7591 §2: absent means the authorization code flow.
    if name not in data:
        return ("authorization_code",) if name == "grant_types" else ("code",)
    values = _string_list(data, name)
    unsupported = sorted(set(values) - allowed)
    if unsupported:
        raise _Refused(f"{name} contains unsupported {', '.join(map(shown, unsupported))}")
    return values


def _one_of(data: dict[str, Any], name: str, allowed: set[str], default: str) -> str:
    value: str = data.get(name, default)
    if value not in allowed:
        raise _Refused(f"{name} {shown(value)} is not supported")
    return value


class MetadataFetcher:
    """Fetches, validates and caches client metadata documents."""

    def __init__(
        self,
        *,
        dev_mode: bool = False,
        max_bytes: int = 5 * 1024,
        timeout_s: float = 5.0,
        default_ttl_s: float = 300.0,
        max_ttl_s: float = 86400.0,
        resolve: Resolve | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dev_mode = dev_mode
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._default_ttl_s = default_ttl_s
        self._max_ttl_s = max_ttl_s
        self._resolve = resolve or _system_resolve
        self._clock = clock
        self._cache: dict[str, tuple[ClientDocument, float]] = {}
        self._inflight: dict[str, asyncio.Task[ClientDocument]] = {}

    async def fetch(self, client_id: str) -> ClientDocument:
        """The document at ``client_id``; concurrent callers share one request."""
        if (cached := self._cache.get(client_id)) and cached[1] > self._clock():
            return cached[0]
        task = self._inflight.get(client_id)
        if task is None:
            task = asyncio.create_task(self._fetch_and_cache(client_id))
            self._inflight[client_id] = task
            task.add_done_callback(lambda done: self._forget(client_id, done))
        # A caller that gives up must not cancel the request the others wait on.
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel fetches still under way and forget cached documents."""
        for task in self._inflight.values():
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        self._cache.clear()

    def _forget(self, client_id: str, task: asyncio.Task[ClientDocument]) -> None:
        if self._inflight.get(client_id) is task:
            del self._inflight[client_id]
        if not task.cancelled():
            task.exception()  # retrieved here so that a failure nobody awaited is not logged

    async def _fetch_and_cache(self, url: str) -> ClientDocument:
        try:
            async with asyncio.timeout(self._timeout_s):
                document, cache_control = await self._download(url)
        except _Refused as exc:
            raise _refusal(url, str(exc)) from None
        except TimeoutError:
            raise _refusal(url, f"no complete answer within {self._timeout_s:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            reason = shown(exc) or type(exc).__name__
            raise _refusal(url, f"the request failed: {reason}") from exc
        if (ttl := self._ttl(cache_control)) is not None:
            self._cache.pop(url, None)
            if len(self._cache) >= _MAX_CACHED:
                del self._cache[next(iter(self._cache))]  # the oldest
            self._cache[url] = (document, self._clock() + ttl)
        return document

    async def _download(self, url: str) -> tuple[ClientDocument, str | None]:
        parts = _parse_url(url, allow_http=self._dev_mode)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await self._checked_addresses(parts.scheme, host, port)
        # trust_env stays off: an environment proxy would bypass the pinned addresses. Nothing
        # is decompressed, so max_bytes bounds what we hold.
        connector = aiohttp.TCPConnector(
            resolver=_PinnedResolver(host, addresses), use_dns_cache=False, force_close=True
        )
        target = URL(url, encoded=True)  # requested exactly as named, never re-quoted
        async with (
            aiohttp.ClientSession(connector=connector, auto_decompress=False) as session,
            session.get(target, headers=_REQUEST_HEADERS, allow_redirects=False) as response,
        ):
            _check_response(response)
            body = await _read_capped(response, self._max_bytes)
            document = _parse_document(url, body, dev_mode=self._dev_mode)
            return document, response.headers.get("Cache-Control")

    async def _checked_addresses(self, scheme: str, host: str, port: int) -> list[str]:
        try:
            addresses = [host] if _ip(host) is not None else await self._resolve(host, port)
        # UnicodeError: the IDNA codec refuses empty or over-long labels before any lookup.
        except (OSError, UnicodeError) as exc:
            raise _Refused(f"cannot resolve host {host} ({shown(exc)})") from None
        if not addresses:
            raise _Refused(f"host {host} resolves to no address")
        for address in addresses:
            problem = _address_problem(address, allow_loopback=self._dev_mode)
            if problem is None and scheme == "http" and not _is_loopback(address):
                problem = f"address {address} is not loopback, and http is only for loopback"
            if problem is not None:
                raise _Refused(problem)
        return addresses

    def _ttl(self, cache_control: str | None) -> float | None:
        """Seconds to keep a document (RFC 9111 §5.2.2), or None not to keep it."""
        directives = [part.strip().lower() for part in (cache_control or "").split(",")]
        if "no-store" in directives or "no-cache" in directives:
            return None
        ages = [d.partition("=")[2].strip('"') for d in directives if d.startswith("max-age=")]
        try:
            max_age = float(int(ages[0]))
        except (IndexError, ValueError):
            return self._default_ttl_s
        return min(max(max_age, _MIN_TTL_S), self._max_ttl_s)


def _refusal(url: str, problem: str) -> OAuthError:
    return invalid_client(f"client metadata document at {shown(url, 300)}: {problem}")
