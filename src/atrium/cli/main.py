"""The root of the ``atrium`` command and its error handling."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from atrium.__about__ import __version__
from atrium.cli import (
    admin,
    agents,
    bridge,
    build,
    client,
    cloud,
    connect,
    gateway,
    infra,
    init,
    plugins,
)
from atrium.cli.acting import check_command
from atrium.cli.context import CliState
from atrium.errors import AtriumError
from atrium.settings import acting_caller_from_env

app = typer.Typer(
    name="atrium",
    help="Host MCP servers as secure HTTP services and connect AI clients to them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(plugins.app, name="plugins")
app.add_typer(cloud.app, name="cloud")
app.add_typer(infra.app, name="infra")
app.add_typer(admin.app, name="admin")
app.add_typer(client.app, name="client")
app.add_typer(agents.app, name="agents")
app.add_typer(build.app, name="build")
app.command("init")(init.init)
app.command("bridge")(bridge.bridge)
app.command("connect")(connect.connect)
app.command("gateway")(gateway.gateway)
app.command("start", help="Start every enabled server (alias of `infra services start --all`).")(
    infra.start
)


def _version(value: bool) -> None:
    if value:
        print(f"atrium {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            "-p",
            help="Project folder (default: $ATRIUM_PROJECT, else the current folder).",
            file_okay=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    ctx.obj = CliState(project_option=project)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command; an ``AtriumError`` becomes its message and exit code."""
    try:
        # Run for a caller of the atrium server: only the commands a caller may run.
        check_command(sys.argv[1:] if argv is None else argv, acting_caller_from_env())
        app(args=argv, prog_name="atrium")
    except AtriumError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(exc.exit_code)
