"""Many MCP servers as one tool set: the connection manager an agent (or any program) uses.

Servers connect in parallel, each within its own timeout; one that fails is reported (with its
reason) and skipped, never holding up the others, and tried again on its next use. Tools are
named ``mcp__<server>__<tool>`` (``atrium.client.naming``), filtered by an ``allowed-tools``
list, and offered in each model provider's format (``atrium.client.schemas``), with the two
resource meta-tools of seed 004, ``list_mcp_resources`` and ``read_mcp_resource``.

``call`` never raises into an agent loop: arguments as a JSON string (as models send them) are
parsed, and a parse error, an unknown tool, a server that is down or a tool's own error all come
back as an ``isError`` result whose text says why. Every call is announced to subscribers by a
``ToolCallBegin`` and a ``ToolCallEnd`` (seed 004's ``McpToolCallBegin``/``McpToolCallEnd``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
from mcp.client.auth import OAuthClientProvider
from mcp.shared.exceptions import MCPError

from atrium.client import resources
from atrium.client.links import CALL_TIMEOUT_S, Link, LinkDown
from atrium.client.mcpjson import ServerSpec
from atrium.client.naming import AllowedTools, ToolOrigin, name_table
from atrium.client.schemas import Format, ToolSpec, resource_tools, to_provider_all
from atrium.client.signin import SIGN_IN_TIMEOUT_S
from atrium.client.transports import CONNECT_TIMEOUT_S
from atrium.errors import AtriumError

logger = logging.getLogger(__name__)

AuthFor = Callable[[ServerSpec], httpx2.Auth | None]


@dataclass(frozen=True)
class ToolCallBegin:
    call_id: str
    name: str
    server: str | None
    tool: str
    arguments: Mapping[str, Any] | None


@dataclass(frozen=True)
class ToolCallEnd:
    call_id: str
    name: str
    server: str | None
    tool: str
    arguments: Mapping[str, Any] | None
    duration_ms: float
    result: types.CallToolResult
    error: str | None  # the reason when ``result.is_error``

    @property
    def ok(self) -> bool:
        return self.error is None


ToolCallEvent = ToolCallBegin | ToolCallEnd


@dataclass(frozen=True)
class ManagedTool:
    """A tool as a model sees it: its namespaced name, where it leads, and its definition."""

    name: str
    origin: ToolOrigin
    tool: types.Tool

    @property
    def retry_safe(self) -> bool:
        annotations = self.tool.annotations
        return bool(annotations is not None and annotations.idempotent_hint)


@dataclass(frozen=True)
class ServerStatus:
    name: str
    connected: bool
    error: str | None
    tools: int


class McpManager:
    """See the module docstring. Use as ``async with McpManager(specs, log_dir=...) as mcp:``."""

    def __init__(
        self,
        specs: Iterable[ServerSpec],
        *,
        log_dir: Path,
        allowed: AllowedTools | None = None,
        auth_for: AuthFor | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        call_meta: Mapping[str, Any] | None = None,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self.allowed = allowed or AllowedTools()
        self._call_meta = dict(call_meta) if call_meta else None
        self._links: dict[str, Link] = {}
        for spec in specs:
            key = _link_key(spec)
            if key in self._links:
                raise AtriumError(f"server '{spec.name}' is configured twice ({spec.source})")
            auth = auth_for(spec) if auth_for is not None else None
            self._links[key] = Link(
                spec,
                log_dir=log_dir,
                auth=auth,
                # A sign-in waits on a person at a browser; the HTTP client's own timeouts
                # still end an unreachable server's connection at once.
                connect_timeout_s=(
                    SIGN_IN_TIMEOUT_S
                    if isinstance(auth, OAuthClientProvider)
                    else connect_timeout_s
                ),
                on_tools_changed=self._forget_table,
                call_timeout_s=call_timeout_s,
            )
        self._table: dict[str, ManagedTool] | None = None
        self._subscribers: list[Callable[[ToolCallEvent], None]] = []

    async def __aenter__(self) -> McpManager:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def links(self) -> Mapping[str, Link]:
        return self._links

    async def connect(self) -> dict[str, str | None]:
        """Connect every server in parallel and list its tools: each server's error or ``None``."""
        results = await asyncio.gather(*(self._list(link) for link in self._links.values()))
        self._table = None
        return dict(zip(self._links, results, strict=True))

    def status(self) -> list[ServerStatus]:
        """Each server: connected or not, why not, and how many tools it listed."""
        return [
            ServerStatus(key, link.connected, link.error, len(link.known_tools()))
            for key, link in self._links.items()
        ]

    async def tools(self) -> list[ManagedTool]:
        """Every allowed tool of every reachable server; ``NameClash`` if two share a name."""
        return [tool for tool in (await self._tool_table()).values()]

    async def provider_tools(self, fmt: Format) -> list[dict[str, Any]]:
        """Every allowed tool, the resource meta-tools included, in ``fmt``; a tool whose schema
        cannot be converted is logged and left out (seed 004)."""
        specs = [
            ToolSpec(t.name, t.tool.description or "", t.tool.input_schema)
            for t in await self.tools()
        ]
        specs += [meta for meta in resource_tools() if self.allowed.allows(meta.name)]
        return to_provider_all(specs, fmt)

    def subscribe(self, subscriber: Callable[[ToolCallEvent], None]) -> Callable[[], None]:
        """Call ``subscriber`` with each begin and end event; returns the unsubscribe function."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | str | None = None,
        call_id: str | None = None,
    ) -> types.CallToolResult:
        """Call a namespaced tool (or a resource meta-tool); never raises (module docstring)."""
        call_id = call_id or uuid.uuid4().hex
        started = time.perf_counter()
        parsed, problem = _arguments(arguments)
        target = await self._target(name)
        server, tool = _describe(name, target, parsed)
        self._emit(ToolCallBegin(call_id, name, server, tool, parsed))
        if problem is None:
            result, problem = await self._run(name, target, parsed or {})
        else:
            result = error_result(problem)
        duration = (time.perf_counter() - started) * 1000
        self._emit(ToolCallEnd(call_id, name, server, tool, parsed, duration, result, problem))
        return result

    async def list_resources(self, server: str | None, cursor: str | None) -> dict[str, Any]:
        """A page of resources (``list_mcp_resources``); ``AtriumError`` says what failed."""
        try:
            return await resources.list_page(self._links, server, cursor)
        except MCPError as exc:
            raise AtriumError(f"server '{server}': {_message(exc)}") from None

    async def read_resource(self, server: str, uri: str) -> dict[str, Any]:
        """One resource's contents (``read_mcp_resource``); ``AtriumError`` says what failed."""
        try:
            return await resources.read(self._links, server, uri)
        except MCPError as exc:
            raise AtriumError(f"server '{server}': {_message(exc)}") from None

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self._links.values()))

    async def _list(self, link: Link) -> str | None:
        try:
            await link.tools()
        except LinkDown as exc:
            logger.warning("%s", exc)
            return str(exc)
        except (MCPError, OSError, TimeoutError) as exc:
            link.error = str(exc) or exc.__class__.__name__
            logger.warning("server %s: listing tools failed: %s", link.name, link.error)
            return link.error
        return None

    async def _tool_table(self) -> dict[str, ManagedTool]:
        stale = [link for link in self._links.values() if link.tools_stale]
        if stale:
            await asyncio.gather(*(self._list(link) for link in stale))
            self._table = None
        if self._table is None:
            self._table = self._build_table()
        return self._table

    def _build_table(self) -> dict[str, ManagedTool]:
        definitions: dict[ToolOrigin, types.Tool] = {}
        for link in self._links.values():
            for tool in link.known_tools():
                origin = ToolOrigin(link.spec.name, tool.name, link.spec.plugin)
                definitions[origin] = tool
        names = name_table(definitions)
        return {
            name: ManagedTool(name, origin, definitions[origin])
            for name, origin in names.items()
            if self.allowed.allows(name)
        }

    def _forget_table(self) -> None:
        self._table = None

    async def _target(self, name: str) -> ManagedTool | str | AtriumError | None:
        if name in resources.META_TOOLS:
            return name if self.allowed.allows(name) else None
        try:
            table = await self._tool_table()
        except AtriumError as exc:  # a name clash: the configuration to fix, said to the model
            logger.error("%s", exc)
            return exc
        return table.get(name)

    async def _run(
        self, name: str, target: ManagedTool | str | AtriumError | None, arguments: dict[str, Any]
    ) -> tuple[types.CallToolResult, str | None]:
        try:
            if target is None:
                raise AtriumError(f"unknown tool '{name}'")
            if isinstance(target, AtriumError):
                raise target
            if isinstance(target, str):
                return json_result(await resources.call_meta(self, target, arguments)), None
            link = self._links[_origin_key(target.origin)]
            result = await link.call_tool(
                target.origin.tool, arguments, retry_safe=target.retry_safe, meta=self._call_meta
            )
        except (AtriumError, MCPError, OSError, TimeoutError) as exc:
            reason = _message(exc)
            return error_result(reason), reason
        return result, (_text(result) or "the tool reported an error") if result.is_error else None

    def _emit(self, event: ToolCallEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                logger.exception("a tool call subscriber failed")


def error_result(reason: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=reason)], is_error=True
    )


def json_result(value: Any) -> types.CallToolResult:
    text = json.dumps(value, ensure_ascii=False, indent=2)
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


def _arguments(raw: Mapping[str, Any] | str | None) -> tuple[dict[str, Any] | None, str | None]:
    if raw is None or raw == "":
        return {}, None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            return None, f"the arguments are not valid JSON: {exc.msg} at position {exc.pos}"
        except RecursionError:
            return None, "the arguments are nested too deeply to read"
    if not isinstance(raw, Mapping):
        return None, f"the arguments must be a JSON object, not {type(raw).__name__}"
    return dict(raw), None


def _describe(
    name: str, target: ManagedTool | str | AtriumError | None, arguments: Mapping[str, Any] | None
) -> tuple[str | None, str]:
    if isinstance(target, ManagedTool):
        return target.origin.server, target.origin.tool
    if isinstance(target, str) and arguments is not None:
        server = arguments.get("server")
        return (server if isinstance(server, str) else None), name
    return None, name


def _message(exc: BaseException) -> str:
    if isinstance(exc, MCPError):
        return f"the server answered with an error: {exc.message} (code {exc.code})"
    return str(exc) or exc.__class__.__name__


def _text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent)).strip()


def _link_key(spec: ServerSpec) -> str:
    """A server as models name it: as configured, ``plugin_<plugin>_<server>`` for a plugin's."""
    return f"plugin_{spec.plugin}_{spec.name}" if spec.plugin else spec.name


def _origin_key(origin: ToolOrigin) -> str:
    return f"plugin_{origin.plugin}_{origin.server}" if origin.plugin else origin.server
