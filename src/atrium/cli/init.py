"""``atrium init [DIR]``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from atrium.cli.context import state
from atrium.scaffold import init_project

if TYPE_CHECKING:
    from atrium.store import Store


def init(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(help="Folder to initialise (default: the project folder).", file_okay=False),
    ] = None,
) -> None:
    """Create a project: atrium.yaml, the built-in servers, a signing key and the store.

    Running it again adds what is missing and never overwrites a file you have.
    """
    cli = state(ctx)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        cli.project_option = directory  # `init DIR` is `--project DIR init`
    settings = cli.settings
    report = init_project(settings)
    cli.with_store(_migrated)
    for path in report.created:
        cli.out.print(f"[green]created[/] {path}", highlight=False)
    for path in report.kept:
        cli.out.print(f"[dim]kept[/]    {path}", highlight=False)
    cli.out.print(f"\nProject ready in {settings.project_dir}", highlight=False)
    cli.out.print("Next: atrium plugins mcp list", highlight=False)


async def _migrated(store: Store) -> None:
    """Opening the store is the work: it creates the database and applies the migrations."""
