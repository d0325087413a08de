"""Fetching a URL that anyone may name without letting them aim Atrium at its own network.

A Client ID Metadata Document's URL is chosen by whoever sends the ``client_id``, so its fetch
guards against SSRF (draft-ietf-oauth-client-id-metadata-document, Security Considerations):
:class:`SafeFetcher` resolves the host itself, refuses addresses that are not globally routable,
connects only to the addresses it checked (no DNS rebinding), follows no redirect, reads at most
``max_bytes`` and stops after ``timeout_s``. Plain http is for loopback only, and loopback only
when ``allow_loopback`` (development). Every failure, aiohttp's included, is a
:class:`FetchRefused` naming one reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from atrium.auth.errors import shown
from atrium.auth.uris import IPAddress, is_loopback

Resolve = Callable[[str, int], Awaitable[list[str]]]

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
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_REQUEST_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FetchRefused(Exception):
    """One reason a fetch was refused or failed; the caller says which URL."""


@dataclass(frozen=True)
class Fetched:
    body: bytes
    cache_control: str | None


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host``, in its order, once each."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class SafeFetcher:
    """GETs JSON from hosts on the public Internet only (loopback too if ``allow_loopback``)."""

    allow_loopback: bool = False
    max_bytes: int = 5 * 1024
    timeout_s: float = 5.0
    resolve: Resolve = system_resolve

    async def get_json(self, url: str) -> Fetched:
        """The body of a 200 ``application/json`` answer at ``url``, or :class:`FetchRefused`."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._get(url)
        except TimeoutError:
            raise FetchRefused(f"no complete answer within {self.timeout_s:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            reason = shown(exc) or type(exc).__name__
            raise FetchRefused(f"the request failed: {reason}") from exc

    async def _get(self, url: str) -> Fetched:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise FetchRefused("the URL is not an absolute http(s) URL")
        host, port = parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme]
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
            body = await _read_capped(response, self.max_bytes)
            return Fetched(body, response.headers.get("Cache-Control"))

    async def _checked_addresses(self, scheme: str, host: str, port: int) -> list[str]:
        try:
            addresses = [host] if _ip(host) is not None else await self.resolve(host, port)
        # UnicodeError: the IDNA codec refuses empty or over-long labels before any lookup.
        except (OSError, UnicodeError) as exc:
            raise FetchRefused(f"cannot resolve host {host} ({shown(exc)})") from None
        if not addresses:
            raise FetchRefused(f"host {host} resolves to no address")
        for address in addresses:
            problem = _address_problem(address, allow_loopback=self.allow_loopback)
            if problem is None and scheme == "http" and not is_loopback(address):
                problem = f"address {address} is not loopback, and http is only for loopback"
            if problem is not None:
                raise FetchRefused(problem)
        return addresses


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


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
        raise FetchRefused(f"answered with a redirect (status {status}), which is not followed")
    if status != 200:
        raise FetchRefused(f"answered status {status}, expected 200")
    content_type = response.headers.get("Content-Type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise FetchRefused(f"content type is '{shown(content_type)}', expected application/json")


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    body = bytearray()
    while chunk := await response.content.read(max_bytes + 1 - len(body)):
        body += chunk
        if len(body) > max_bytes:
            raise FetchRefused(f"larger than {max_bytes} bytes")
    return bytes(body)
