"""Opening the official ``mcp`` client to one server through the gateway.

The CLI reaches a hosted server exactly as any MCP client does: Streamable HTTP to
``/api/v1/mcp/<server>/mcp`` on the gateway. What can go wrong on the way (the SDK raises
``httpx2`` errors inside anyio exception groups, and ``MCPError`` for a JSON-RPC error) is
translated here, at the adapter edge, into ``AtriumError``s a user can act on:

* ``GatewayUnreachable``: nothing answers at the URL (Atrium is not running).
* ``JsonRpcError``: the gateway or the server answered with a JSON-RPC error; carries its code.
* ``RequestFailed``: a timeout, an HTTP failure, or an answer that is not valid MCP.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field

import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from pydantic import ValidationError

from atrium.errors import AtriumError
from atrium.settings import Settings

DEFAULT_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0
START_HINT = (
    "is Atrium running? Start it with `atrium start`"
    " (or `atrium infra services start --all --detach`)"
)

# A gateway bound to every interface is reached on loopback from this machine.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class GatewayUnreachable(AtriumError):
    def __init__(self, url: str, reason: str, hint: str | None) -> None:
        self.url = url
        message = f"cannot connect to {url} ({reason})"
        super().__init__(f"{message}; {hint}" if hint else message)


class JsonRpcError(AtriumError):
    """A JSON-RPC error answer; ``code`` is its error code (-32601 method not found, ...)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.detail = message
        super().__init__(f"JSON-RPC error {code}: {message}")


class RequestFailed(AtriumError):
    pass


def gateway_url(settings: Settings, server: str) -> str:
    """The gateway's MCP endpoint for ``server``, as reached from this machine.

    Not ``settings.endpoint_for``: the public URL may name a host this machine cannot resolve.
    """
    host = _WILDCARDS.get(settings.gateway_host, settings.gateway_host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.gateway_port}/api/v1/mcp/{server}/mcp"


@dataclass
class Connection:
    """An open client, and what the CLI reports about the way it got there."""

    client: Client
    url: str
    connect_ms: float
    # The gateway's X-Request-Id of each answer to a POST, in order: the audit trail's key.
    request_ids: list[str] = field(default_factory=list)

    @property
    def last_request_id(self) -> str | None:
        return self.request_ids[-1] if self.request_ids else None


@contextlib.asynccontextmanager
async def connect(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    mode: str = "auto",
    hint: str | None = START_HINT,
) -> AsyncIterator[Connection]:
    """An ``mcp.Client`` connected to ``url`` (protocol negotiated as ``mode`` says).

    ``headers`` go with every request: the seam for the bearer token OAuth will add.
    ``hint`` is appended when nothing answers at ``url``. Any failure inside the block,
    the caller's included, leaves as an ``AtriumError`` when it is one of the above.
    """
    request_ids: list[str] = []

    async def note_request_id(response: httpx2.Response) -> None:
        if response.request.method == "POST" and (found := response.headers.get("x-request-id")):
            request_ids.append(found)

    timeout = httpx2.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
    with _translated(url, hint, timeout_s):
        async with httpx2.AsyncClient(
            headers=dict(headers or {}),
            timeout=timeout,
            event_hooks={"response": [note_request_id]},
        ) as http:
            transport = streamable_http_client(url, http_client=http)
            try:
                client = Client(transport, mode=mode, read_timeout_seconds=timeout_s)
            except ValueError as exc:  # an unknown ``mode``
                raise RequestFailed(f"protocol {mode!r}: {exc}") from None
            started = time.perf_counter()
            async with client as opened:
                elapsed = (time.perf_counter() - started) * 1000
                yield Connection(opened, url, elapsed, request_ids)


@contextlib.contextmanager
def _translated(url: str, hint: str | None, timeout_s: float) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        translated = _translation(error, url, hint, timeout_s)
        if translated is error:
            raise
        raise translated from None


def _translation(error: Exception, url: str, hint: str | None, timeout_s: float) -> Exception:
    leaves = list(_leaves(error))
    for leaf in leaves:  # an error of our own, raised in the caller's block, wins
        if isinstance(leaf, AtriumError):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, MCPError):
            return JsonRpcError(leaf.code, leaf.message)
        if isinstance(leaf, httpx2.ConnectError):
            return GatewayUnreachable(url, str(leaf) or "connection refused", hint)
        if isinstance(leaf, httpx2.TimeoutException | TimeoutError):
            return RequestFailed(f"no answer from {url} within {timeout_s:g} s")
        if isinstance(leaf, httpx2.HTTPError):
            return RequestFailed(f"{url}: {leaf.__class__.__name__}: {leaf}")
        if isinstance(leaf, ValidationError):
            first = leaf.errors()[0]
            return RequestFailed(
                f"{url} answered with a message that is not valid MCP: {first['msg']}"
                f" at {'.'.join(map(str, first['loc']))}"
            )
    return error


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error
