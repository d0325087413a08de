"""``atrium client``: the connection manager (``atrium.client.manager``) from the command line.

Every command takes the same ``--config`` (repeatable: a ``.mcp.json`` file, or a plugin folder
holding one) and ``--registry`` (every enabled server of this project, through the gateway), so
a ``call`` or a ``read`` reaches exactly the servers ``tools`` listed. A server that cannot be
reached is named on stderr and skipped; the others answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from atrium.cli.context import CliState, run_interruptible
from atrium.cli.tables import table
from atrium.client.schemas import FORMATS, Format
from atrium.errors import UsageError

if TYPE_CHECKING:  # the MCP client loads when a client command runs, not with every command
    from atrium.client.manager import McpManager

app = typer.Typer(
    help="Use many MCP servers at once, as one namespaced tool set (mcp__<server>__<tool>).",
    no_args_is_help=True,
)
T = TypeVar("T")

ConfigOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--config",
        "-c",
        help="A .mcp.json file, or a plugin folder with one (repeatable).",
        exists=True,
    ),
]
RegistryOption = Annotated[
    bool, typer.Option("--registry", help="Add this project's enabled servers (via the gateway).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _manager(cli: CliState, configs: list[Path] | None, registry: bool) -> McpManager:
    from atrium.client.manager import McpManager
    from atrium.client.signin import oauth_for
    from atrium.client.sources import file_specs, registry_specs

    specs = file_specs(configs or [], cli.settings.environ)
    if registry:
        from atrium.auth.operator import operator_token

        entries = cli.registry()
        specs += registry_specs(cli.settings, entries, lambda s: operator_token(cli.settings, s))
    if not specs:
        raise UsageError("no servers: give --config .mcp.json (repeatable) and/or --registry")
    folder = cli.settings.state_dir / "client-credentials"
    return McpManager(
        specs,
        log_dir=cli.settings.logs_dir,
        auth_for=lambda spec: oauth_for(spec, folder, _open_browser(cli)),
    )


def _open_browser(cli: CliState) -> Callable[[str], None]:
    def open_browser(link: str) -> None:
        import threading
        import webbrowser

        cli.err.print(f"sign in at {link}", highlight=False, markup=False)
        # In a thread: a $BROWSER command is waited for, and the sign-in must go on meanwhile.
        threading.Thread(target=webbrowser.open, args=(link,), daemon=True).start()

    return open_browser


def _run(
    ctx: typer.Context,
    configs: list[Path] | None,
    registry: bool,
    work: Callable[[McpManager], Awaitable[T]],
) -> T:
    cli: CliState = ctx.obj
    manager = _manager(cli, configs, registry)

    async def run() -> T:
        async with manager:
            for status in manager.status():
                if status.error:
                    cli.err.print(
                        f"[yellow]warning:[/] server '{status.name}' skipped: {status.error}",
                        highlight=False,
                    )
            return await work(manager)

    return run_interruptible(run())


@app.command("tools")
def tools(
    ctx: typer.Context,
    config: ConfigOption = None,
    registry: RegistryOption = False,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help=f"Print the tools for a model API: {', '.join(FORMATS)}."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List every tool by the name a model calls it (mcp__<server>__<tool>)."""
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    cli: CliState = ctx.obj

    async def work(manager: McpManager) -> Any:
        if fmt is not None:
            return await manager.provider_tools(_format(fmt))
        return [
            {
                "name": t.name,
                "server": t.origin.server,
                "tool": t.origin.tool,
                "description": t.tool.description or "",
                "inputSchema": t.tool.input_schema,
            }
            for t in await manager.tools()
        ]

    listed = _run(ctx, config, registry, work)
    if fmt is not None or as_json:
        cli.print_json(listed)
        return
    rows = [[t["name"], t["server"], _first_line(t["description"])] for t in listed]
    cli.out.print(table(["TOOL", "SERVER", "DESCRIPTION"], rows, prose_last=True))


@app.command("call")
def call(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="The namespaced tool, e.g. mcp__time__get_current_time.")
    ],
    arguments: Annotated[str, typer.Argument(help="The arguments as a JSON object.")] = "{}",
    config: ConfigOption = None,
    registry: RegistryOption = False,
    as_json: JsonOption = False,
) -> None:
    """Call one tool; exit 1 when it answers with an error."""
    cli: CliState = ctx.obj
    result = _run(ctx, config, registry, lambda manager: manager.call(name, arguments))
    if as_json:
        cli.print_json(result.model_dump(mode="json", by_alias=True, exclude_none=True))
    else:
        for content in result.content:
            text = getattr(content, "text", None)
            print(
                text
                if text is not None
                else json.dumps(content.model_dump(mode="json", by_alias=True))
            )
    if result.is_error:
        raise typer.Exit(1)


@app.command("resources")
def resources(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option("--server", help="Only this server's.")] = None,
    config: ConfigOption = None,
    registry: RegistryOption = False,
    as_json: JsonOption = False,
) -> None:
    """List the resources of every server (every page), or of one."""
    cli: CliState = ctx.obj

    async def work(manager: McpManager) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await manager.list_resources(server, cursor)
            listed += page["resources"]
            cursor = page["nextCursor"]
            if not cursor:
                return listed

    listed = _run(ctx, config, registry, work)
    if as_json:
        cli.print_json(listed)
        return
    rows = [[r["server"], r["uri"], r.get("mimeType", ""), r.get("name", "")] for r in listed]
    cli.out.print(table(["SERVER", "URI", "TYPE", "NAME"], rows, prose_last=True))


@app.command("read")
def read(
    ctx: typer.Context,
    server: Annotated[str, typer.Argument(help="The server, as `resources` names it.")],
    uri: Annotated[str, typer.Argument(help="The resource's URI.")],
    config: ConfigOption = None,
    registry: RegistryOption = False,
    as_json: JsonOption = False,
) -> None:
    """Read one resource: its text, or what its binary content is."""
    cli: CliState = ctx.obj
    found = _run(ctx, config, registry, lambda manager: manager.read_resource(server, uri))
    if as_json:
        cli.print_json(found)
        return
    for content in found["contents"]:
        if "text" in content:
            print(content["text"])
        else:
            size = len(content.get("blob", "")) * 3 // 4
            print(f"({content.get('mimeType', 'binary')}, about {size} bytes; --json shows it)")


def _format(value: str) -> Format:
    for known in FORMATS:
        if value == known:
            return known
    raise UsageError(f"--format must be one of {', '.join(FORMATS)}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
