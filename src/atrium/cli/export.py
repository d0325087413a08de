"""``atrium plugins mcp export-registry SERVER``: the server's MCP Registry ``server.json``.

The document (``atrium.gateway.cards.registry_entry``) follows the registry's generic format
(modelcontextprotocol/registry, docs/reference/server-json): ``name`` in reverse-DNS form,
``description``, ``version``, and one ``streamable-http`` remote at the public endpoint. Publish
it with the registry's own tool (``mcp-publisher``), which proves the namespace is yours: the
default namespace is the public URL's host, reversed; ``--name`` gives another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from atrium.cli.context import state
from atrium.errors import UsageError, display_path

OutputOption = Annotated[
    Path,
    typer.Option("--output", "-o", help="Where to write it; '-' prints it.", dir_okay=False),
]
NameOption = Annotated[
    str | None,
    typer.Option(
        "--name", help="Registry name, e.g. io.github.you/server (default: from the URL)."
    ),
]
VersionOption = Annotated[
    str | None, typer.Option("--version", help="The version to publish (default: Atrium's).")
]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace an existing --output file.")]


def export_registry(
    ctx: typer.Context,
    server: Annotated[str, typer.Argument(help="Server name.")],
    output: OutputOption = Path("server.json"),
    name: NameOption = None,
    version: VersionOption = None,
    force: ForceOption = False,
) -> None:
    """Write SERVER's MCP Registry server.json: its public endpoint, name and version."""
    from atrium.client.configs import render, write_atomically
    from atrium.gateway.cards import name_problem, registry_entry, version_problem

    if name is not None and (problem := name_problem(name)):
        raise UsageError(f"--name: {problem}")
    if version is not None and (problem := version_problem(version)):
        raise UsageError(f"--version: {problem}")
    to_stdout = str(output) == "-"
    if not to_stdout and output.exists() and not force:
        raise UsageError(f"--output: {output} exists; pass --force to replace it")
    cli = state(ctx)
    config = cli.registry().get(server).config
    text = render(registry_entry(cli.settings, server, config, name=name, version=version))
    public = cli.settings.public_url
    if not public.startswith("https://"):
        cli.err.print(
            f"note: the remote URL is on {public}; the registry is for public https:// servers"
            " (set gateway.public_url in atrium.yaml)",
            highlight=False,
            markup=False,
        )
    if to_stdout:
        print(text, end="")
        return
    write_atomically(output, text, private=False)
    shown = display_path(output, Path.cwd())
    cli.err.print(f"wrote {shown}", highlight=False, markup=False)
