"""What ``atrium plugins mcp validate`` and ``test`` find out about a connected server.

``validate`` reads what the connection negotiated (protocol version, server info,
capabilities), lists every tool and checks the listing against the rules of the MCP
specification's ``tools/list`` a client depends on: unique names, an object ``inputSchema``
(schema "Tool"). ``measure`` times round trips, each a ``tools/list`` past the client's
response cache: ``ping`` does not exist at protocol 2026-07-28.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from mcp.types import Tool

from atrium.client.connect import Connection, RequestFailed

MAX_PAGES = 100  # a server whose cursor never ends cannot hang the CLI


async def list_all_tools(connection: Connection) -> list[Tool]:
    """Every page of ``tools/list``."""
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await connection.client.list_tools(cursor=cursor, cache_mode="bypass")
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools
    raise RequestFailed(f"tools/list still had a next page after {MAX_PAGES} pages")


@dataclass(frozen=True)
class ServerReport:
    url: str
    protocol_version: str
    server_name: str | None
    server_version: str | None
    server_title: str | None
    capabilities: dict[str, Any]
    instructions: str | None
    tool_count: int | None  # None when the server declares no tools capability
    connect_ms: float
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self), "problems": list(self.problems)}


async def validate(connection: Connection) -> ServerReport:
    client = connection.client
    capabilities = client.server_capabilities.model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    tools = await list_all_tools(connection) if "tools" in capabilities else None
    info = client.server_info
    return ServerReport(
        url=connection.url,
        protocol_version=client.protocol_version,
        server_name=info.name if info else None,
        server_version=info.version if info else None,
        server_title=info.title if info else None,
        capabilities=capabilities,
        instructions=client.instructions,
        tool_count=None if tools is None else len(tools),
        connect_ms=round(connection.connect_ms, 1),
        problems=tuple(tool_problems(tools or [])),
    )


def tool_problems(tools: list[Tool]) -> list[str]:
    problems = []
    seen: set[str] = set()
    for tool in tools:
        if tool.name in seen:
            problems.append(f"tool {tool.name!r} is listed more than once")
        seen.add(tool.name)
        if tool.input_schema.get("type") != "object":
            problems.append(f"tool {tool.name!r}: inputSchema must be a JSON Schema of type object")
    return problems


@dataclass(frozen=True)
class Timing:
    url: str
    protocol_version: str
    connect_ms: float
    round_trips_ms: tuple[float, ...]
    tool_count: int

    @property
    def min_ms(self) -> float:
        return min(self.round_trips_ms)

    @property
    def avg_ms(self) -> float:
        return statistics.fmean(self.round_trips_ms)

    @property
    def max_ms(self) -> float:
        return max(self.round_trips_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "protocol_version": self.protocol_version,
            "connect_ms": round(self.connect_ms, 1),
            "round_trips_ms": [round(ms, 1) for ms in self.round_trips_ms],
            "min_ms": round(self.min_ms, 1),
            "avg_ms": round(self.avg_ms, 1),
            "max_ms": round(self.max_ms, 1),
            "tool_count": self.tool_count,
        }


async def measure(connection: Connection, count: int) -> Timing:
    """``count`` (at least one) round trips of ``tools/list``, each timed."""
    durations = []
    tool_count = 0
    for _ in range(max(count, 1)):
        started = time.perf_counter()
        tool_count = len(await list_all_tools(connection))
        durations.append((time.perf_counter() - started) * 1000)
    return Timing(
        url=connection.url,
        protocol_version=connection.client.protocol_version,
        connect_ms=connection.connect_ms,
        round_trips_ms=tuple(durations),
        tool_count=tool_count,
    )
