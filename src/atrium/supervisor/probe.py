"""Probing a remote server: there is no process to watch, so its status is whether it answers.

A GET on a Streamable HTTP endpoint may be answered 200 (an SSE stream), 405 (no GET stream)
or 401 (sign-in needed): any HTTP answer means the server is up; only a failure to connect, a
TLS error or a time-out means it is down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from atrium.errors import AtriumError
from atrium.registry.loader import ServerEntry
from atrium.registry.schema import RemoteServer
from atrium.registry.secrets import resolve_headers
from atrium.settings import Settings


@dataclass(frozen=True)
class Probe:
    reachable: bool
    detail: str
    elapsed_ms: float


async def probe_remote(entry: ServerEntry, settings: Settings, timeout_s: float = 5.0) -> Probe:
    if not isinstance(entry.config, RemoteServer):
        raise TypeError(f"server '{entry.name}' is not remote: there is nothing to probe")
    url = entry.config.url
    started = time.monotonic()
    try:
        headers = resolve_headers(entry, settings)
    except AtriumError as exc:
        return Probe(False, str(exc), 0.0)
    headers.setdefault("Accept", "text/event-stream")
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(url, headers=headers, allow_redirects=False) as response,
        ):
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        detail = f"unreachable: {exc.__class__.__name__}: {exc}".rstrip(": ")
        return Probe(False, detail, _ms(started))
    return Probe(True, f"HTTP {status}", _ms(started))


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
