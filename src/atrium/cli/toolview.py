"""How ``atrium plugins mcp tools|call|validate|test`` print what a server answered.

Imported by those commands only, when they run: it loads the MCP SDK's types. What a server
says is outside data: printed through ``safe_text`` (``atrium.cli.safe_text``), tables too.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mcp.types import (
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    TextResourceContents,
    Tool,
    ToolAnnotations,
)
from rich.markup import escape

from atrium.cli.context import CliState
from atrium.cli.safe_text import safe_text
from atrium.cli.tables import table

if TYPE_CHECKING:
    from atrium.cli.every_server import Answer
    from atrium.client.checks import ServerReport, Timing

DESCRIPTION_CHARS = 120


def tools_table(tools: list[Tool]) -> Any:
    cells = [_tool_cells(tool) for tool in tools]
    return table(("name", "hints", "parameters", "description"), cells, prose_last=True)


def every_tools_table(answers: list[Answer[list[Tool]]]) -> Any:
    """A row per tool with its server; a server that did not answer is a row saying why."""
    cells: list[list[str]] = []
    for answer in answers:
        if answer.value is None:
            cells.append([answer.server, "(not listed)", "-", "-", str(answer.error)])
        elif not answer.value:
            cells.append([answer.server, "-", "-", "-", "(no tools)"])
        for tool in answer.value or []:
            cells.append([answer.server, *_tool_cells(tool)])
    headers = ("server", "name", "hints", "parameters", "description")
    return table(headers, cells, prose_last=True)


def _tool_cells(tool: Tool) -> list[str]:
    return [
        tool.name,
        hints(tool.annotations),
        parameters(tool.input_schema),
        short(tool.title, tool.description),
    ]


def validation_table(answers: list[Answer[ServerReport]]) -> Any:
    """A row per server: its verdict, what it negotiated, and its problems or why it failed."""
    cells = []
    for answer in answers:
        report = answer.value
        if report is None:
            cells.append([answer.server, "unreachable", "-", "-", "-", str(answer.error)])
            continue
        tools = "-" if report.tool_count is None else str(report.tool_count)
        cells.append(
            [
                answer.server,
                "valid" if report.ok else "invalid",
                report.protocol_version,
                tools,
                f"{report.connect_ms:.1f}",
                "; ".join(report.problems) or "-",
            ]
        )
    headers = ("server", "verdict", "protocol", "tools", "connect ms", "problems")
    return table(headers, cells, prose_last=True)


def hints(annotations: ToolAnnotations | None) -> str:
    """The behaviour hints a tool declares; MCP's defaults (destructive, open world) unsaid."""
    if annotations is None:
        return "-"
    words = []
    if annotations.read_only_hint:
        words.append("read-only")
    elif annotations.destructive_hint is True:
        words.append("destructive")
    elif annotations.destructive_hint is False:
        words.append("non-destructive")
    if annotations.idempotent_hint and not annotations.read_only_hint:
        words.append("idempotent")
    if annotations.open_world_hint is False:
        words.append("closed-world")
    return ", ".join(words) or "-"


def parameters(schema: dict[str, Any]) -> str:
    """``name: type`` of each property; ``?`` marks the optional ones."""
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return "-"
    required = set(schema.get("required") or [])
    return ", ".join(
        f"{name}{'' if name in required else '?'}: {_type_of(spec)}"
        for name, spec in properties.items()
    )


def _type_of(spec: Any) -> str:
    if not isinstance(spec, dict):
        return "any"
    kind = spec.get("type")
    if isinstance(kind, list):
        return "|".join(map(str, kind))
    if kind:
        return str(kind)
    branches = spec.get("anyOf") or spec.get("oneOf")
    if isinstance(branches, list):
        return "|".join(_type_of(branch) for branch in branches)
    return "enum" if "enum" in spec else "object" if "$ref" in spec else "any"


def short(title: str | None, description: str | None) -> str:
    """The description's first sentence (else the title), cut to fit a table cell."""
    lines = (description or "").strip().splitlines()
    text = lines[0].split(". ")[0].rstrip(".") if lines else title or ""
    if len(text) > DESCRIPTION_CHARS:
        text = text[: DESCRIPTION_CHARS - 1].rstrip() + "…"
    return text or "-"


def print_result(cli: CliState, result: CallToolResult) -> None:
    """Text as written, other blocks summarised, structured content as indented JSON.

    A text block that is the structured content's JSON (servers echo it there for clients
    of older protocol versions) is printed once, indented.
    """
    structured = result.structured_content
    echoed = False
    for block in result.content:
        text = block_text(block)
        if structured is not None and block.type == "text" and _same_json(text, structured):
            text, echoed = _pretty(structured), True
        print(safe_text(text, multiline=True))
    if structured is not None and not echoed:
        if result.content:
            print()
        print(safe_text(_pretty(structured), multiline=True))
    if not result.content and structured is None:
        cli.err.print("(the tool returned no content)")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def error_text(result: CallToolResult) -> str:
    """What a failed tool said, safe to print (``safe_text``)."""
    text = "\n".join(block_text(block) for block in result.content) or "(no message)"
    return safe_text(text, multiline=True)


def block_text(block: ContentBlock) -> str:
    """A text block's text; a one-line summary of an image, audio or resource."""
    if block.type == "text":
        return block.text
    if block.type == "image" or block.type == "audio":
        return f"[{block.type} {block.mime_type}, {_size(len(block.data) * 3 // 4)}]"
    if block.type == "resource_link":
        described = ", ".join(filter(None, [block.name, block.mime_type]))
        return f"[resource link {block.uri} ({described})]"
    return _embedded(block)


def _embedded(block: EmbeddedResource) -> str:
    resource = block.resource
    kind = resource.mime_type or "unknown type"
    if isinstance(resource, TextResourceContents):
        size = _size(len(resource.text.encode()))
        return f"[resource {resource.uri} ({kind}, {size})]\n{resource.text}"
    return f"[resource {resource.uri} ({kind}, {_size(len(resource.blob) * 3 // 4)})]"


def _size(count: int) -> str:
    return f"{count} B" if count < 1024 else f"{count / 1024:.1f} KB"


def _same_json(text: str, value: Any) -> bool:
    try:
        return bool(json.loads(text) == value)
    except ValueError:
        return False


def capabilities_text(capabilities: dict[str, Any]) -> str:
    """``tools (listChanged), resources (subscribe, listChanged), ...``"""
    parts = []
    for name, options in capabilities.items():
        flags = (
            [key for key, on in options.items() if on is True] if isinstance(options, dict) else []
        )
        parts.append(f"{name} ({', '.join(flags)})" if flags else name)
    return ", ".join(parts) or "(none)"


def render_report(cli: CliState, server: str, report: ServerReport) -> None:
    identity = " ".join(filter(None, [report.server_name, report.server_version])) or "(anonymous)"
    if report.server_title:
        identity += f" ({report.server_title})"
    rows = [
        ["url", report.url],
        ["protocol", report.protocol_version],
        ["server", identity],
        ["capabilities", capabilities_text(report.capabilities)],
        ["tools", "no tools capability" if report.tool_count is None else str(report.tool_count)],
        ["connect", f"{report.connect_ms:.1f} ms"],
    ]
    if report.instructions:
        rows.append(["instructions", short(None, report.instructions)])
    cli.out.print(table(("", server), rows, prose_last=True))
    for problem in report.problems:
        cli.err.print(f"[red]problem:[/] {escape(safe_text(problem))}", highlight=False)
    verdict = (
        "[green]valid[/]" if report.ok else f"[red]invalid[/] ({len(report.problems)} problems)"
    )
    cli.out.print(f"{escape(server)}: {verdict}", highlight=False)


def render_timing(cli: CliState, server: str, timing: Timing) -> None:
    cli.out.print(
        f"{escape(server)}: connected to {escape(timing.url)} in {timing.connect_ms:.1f} ms"
        f" (protocol {timing.protocol_version})",
        highlight=False,
    )
    for index, ms in enumerate(timing.round_trips_ms, start=1):
        cli.out.print(f"  tools/list #{index}: {ms:.1f} ms ({timing.tool_count} tools)")
    cli.out.print(
        f"round trip min {timing.min_ms:.1f} ms, avg {timing.avg_ms:.1f} ms,"
        f" max {timing.max_ms:.1f} ms over {len(timing.round_trips_ms)}",
        highlight=False,
    )
