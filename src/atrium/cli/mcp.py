"""``atrium plugins mcp``: the project's servers (list, show, status, logs) and their tools."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from atrium.cli import export, mcp_client
from atrium.cli.build import find_binary
from atrium.cli.context import CliState, state
from atrium.cli.safe_text import safe_text
from atrium.cli.status import render, status_rows
from atrium.cli.tables import table
from atrium.redaction import redacted
from atrium.supervisor.logs import log_tail

if TYPE_CHECKING:
    from atrium.registry.loader import ServerEntry
    from atrium.registry.schema import ServerConfig

app = typer.Typer(help="MCP servers: configuration, status and tools.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _summary(cli: CliState, entry: ServerEntry) -> dict[str, Any]:
    from atrium.registry.schema import port_of

    config = entry.config
    return {
        "name": entry.name,
        "port": port_of(config),
        "enabled": config.enabled,
        "transport": config.transport,
        "oauth_required": config.oauth.required,
        "scopes": list(config.oauth.scopes),
        "description": config.description,
        "endpoint": config.endpoint or cli.settings.endpoint_for(entry.name),
        "source": entry.source,
    }


@app.command("list")
def list_servers(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the MCP servers configured in services/mcp/."""
    cli = state(ctx)
    rows = [_summary(cli, entry) for entry in cli.registry()]
    if as_json:
        cli.print_json(rows)
        return
    if not rows:
        cli.out.print(
            f"No MCP servers in {cli.settings.mcp_dir}."
            " Run `atrium init` to create the built-in ones."
        )
        return
    cells = [
        [
            row["name"],
            "-" if row["port"] is None else str(row["port"]),
            "yes" if row["enabled"] else "no",
            row["transport"],
            "required" if row["oauth_required"] else "off",
            ", ".join(row["scopes"]) or "-",
            row["description"],
        ]
        for row in rows
    ]
    headers = ("name", "port", "enabled", "transport", "oauth", "scopes", "description")
    cli.out.print(table(headers, cells, prose_last=True))


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Server name.")],
    as_json: JsonOption = False,
) -> None:
    """Show every field of one server, its public endpoint and its tool policy."""
    cli = state(ctx)
    entry = cli.registry().get(name)
    config = redacted(entry.config.to_json(), config=True)
    endpoint = entry.config.endpoint or cli.settings.endpoint_for(entry.name)
    if as_json:
        cli.print_json(
            {"name": entry.name, "source": entry.source, "endpoint": endpoint, "config": config}
        )
        return
    cli.out.print(f"[bold]{entry.name}[/]  ({escape(entry.source)})", highlight=False)
    cells = [
        ["public endpoint", endpoint],
        *([key, _text(value)] for key, value in _flatten(config)),
    ]
    cli.out.print(table(("key", "value"), cells, prose_last=True))
    policy = entry.config.tools
    cli.out.print(
        f"Tool policy: allowed {_globs(policy.allowed)}; denied {_globs(policy.denied)}; "
        f"public (anonymous callers) {_public(entry.config)}",
        highlight=False,
    )


def _public(config: ServerConfig) -> str:
    """The public tools in words (the rules are atrium.gateway.access's, rule 5)."""
    if config.tools.public is not None:
        return _globs(config.tools.public)
    if config.oauth.required:
        return "none (sign-in required)"
    if config.oauth.dev_mode:
        return "every allowed tool (oauth.dev_mode: local development only)"
    return "the tools annotated readOnlyHint"


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value and not set(value) <= {"$env", "$file"}:
        rows = []
        for key, item in value.items():
            rows += _flatten(item, f"{prefix}.{key}" if prefix else key)
        return rows
    return [(prefix, value)]


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "[]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) if value else "{}"
    return str(value)


def _globs(patterns: tuple[str, ...]) -> str:
    return escape(", ".join(patterns)) if patterns else "(none)"


@app.command("list-packages")
def list_packages(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the packages that provide the servers' binaries, and whether each is installed."""
    cli = state(ctx)
    registry = cli.registry()
    rows: dict[str, dict[str, Any]] = {}
    for entry in registry:
        if entry.config.package is None and entry.config.binary is None:
            continue
        package = entry.config.package or entry.name
        row = rows.setdefault(
            package, {"package": package, "binary": entry.config.binary, "servers": []}
        )
        row["servers"].append(entry.name)
    for extension in registry.extensions.values():
        row = rows.setdefault(
            extension.name, {"package": extension.name, "binary": extension.binary, "servers": []}
        )
        row["extension"] = extension.source
    for row in rows.values():
        row.setdefault("extension", None)
        # Where the supervisor looks (PATH, then beside the interpreter): `atrium build mcp`
        # installs a Python server there.
        row["installed"] = (
            bool(row["binary"]) and find_binary(row["binary"], cli.settings) is not None
        )
    result = sorted(rows.values(), key=lambda r: r["package"])
    if as_json:
        cli.print_json(result)
        return
    cells = [
        [
            row["package"],
            row["binary"] or "-",
            ", ".join(row["servers"]) or "-",
            row["extension"] or "-",
            "yes" if row["installed"] else "no",
        ]
        for row in result
    ]
    cli.out.print(table(("package", "binary", "servers", "extension", "installed"), cells))


@app.command("status")
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Running state of every server: state, pid, port, uptime, restarts, binary."""
    cli = state(ctx)
    rows = status_rows(cli, cli.registry())
    if as_json:
        cli.print_json(rows)
        return
    render(cli, rows)


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(help="Server name; without it, every enabled server.", show_default=False),
    ] = None,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="Lines to show (of each server).")
    ] = 50,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines (of one server).")
    ] = False,
) -> None:
    """Show the server's log, logs/mcp-<name>.log; without a name, every enabled server's."""
    cli = state(ctx)
    if name is None:
        if follow:
            raise typer.BadParameter("name the server to follow", param_hint="--follow")
        _every_log(cli, lines)
        return
    entry = cli.registry().get(name)
    path = cli.settings.logs_dir / f"mcp-{entry.name}.log"
    if not path.exists() and not follow:
        cli.err.print(f"No log yet for '{entry.name}' ({path}): it has not been started here.")
        return
    for line in log_tail(path, lines):
        print(line)
    if follow:
        _follow(path)


def _every_log(cli: CliState, lines: int) -> None:
    """``<server>  <line>`` for the last ``lines`` lines of each enabled server's log."""
    registry = cli.registry()
    names = [entry.name for entry in registry if entry.config.enabled]
    if not names:
        cli.err.print(f"No enabled MCP server in {cli.settings.mcp_dir}.")
        return
    width = max(map(len, names))
    for name in names:
        path = cli.settings.logs_dir / f"mcp-{name}.log"
        if not path.exists():
            print(f"{name.ljust(width)}  (no log here: {_why_no_log(registry.get(name))})")
        for line in log_tail(path, lines):
            print(f"{name.ljust(width)}  {safe_text(line)}")


def _why_no_log(entry: ServerEntry) -> str:
    if entry.config.transport == "remote":
        return "a remote server logs where it runs"
    return "not started from this project yet"


def _follow(path: Path) -> None:
    """Print what is appended to ``path`` until Ctrl-C; survives the file being rotated."""
    position = path.stat().st_size if path.exists() else 0
    try:
        while True:
            size = path.stat().st_size if path.exists() else 0
            if size < position:  # truncated or replaced: start from its beginning
                position = 0
            if size > position:
                with path.open("rb") as stream:
                    stream.seek(position)
                    chunk = stream.read(size - position)
                position = size
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            time.sleep(0.25)
    except KeyboardInterrupt:
        return


# Through the gateway, with the official MCP client (atrium.cli.mcp_client).
app.command("tools")(mcp_client.tools)
app.command("call")(mcp_client.call)
app.command("validate")(mcp_client.validate)
app.command("test")(mcp_client.connectivity)
app.command("export-registry")(export.export_registry)
