"""``atrium init [DIR]``."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from atrium.cli.context import state
from atrium.scaffold import init_project

if TYPE_CHECKING:
    from atrium.store import Store

FIRST_ADMIN = "admin"


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
    password = secrets.token_urlsafe(12)
    admin_created = cli.with_store(lambda store: _first_admin(store, password))
    for path in report.created:
        cli.out.print(f"[green]created[/] {path}", highlight=False)
    for path in report.kept:
        cli.out.print(f"[dim]kept[/]    {path}", highlight=False)
    cli.out.print(f"\nProject ready in {settings.project_dir}", highlight=False)
    if admin_created:
        cli.out.print(
            f"\nThe first administrator is [bold]{FIRST_ADMIN}[/], password (shown once): "
            f"[bold]{password}[/]\nClients sign in through {settings.oauth_base}/authorize; "
            f"change it with: atrium admin users set-password {FIRST_ADMIN}",
            highlight=False,
        )
    cli.out.print("Next: atrium plugins mcp list", highlight=False)


async def _first_admin(store: Store, password: str) -> bool:
    """Opening the store migrates it; a store without users gets its first admin."""
    from atrium.cli.admin import create_user

    if await store.users.count():
        return False
    await create_user(store, FIRST_ADMIN, password, "admin")
    return True
