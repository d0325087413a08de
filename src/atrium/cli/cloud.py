"""``atrium cloud sync local mcp``: server YAML on disk ⇄ the store; ``cloud status``: what a
sync would change in each direction."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from atrium.cli.context import CliState, state
from atrium.errors import display_path

if TYPE_CHECKING:  # SQLAlchemy loads only when a sync runs
    from atrium.registry.sync import DbChange, FileChange, SyncStatus
    from atrium.store import Store

app = typer.Typer(help="Synchronise the project with its store.", no_args_is_help=True)
sync_app = typer.Typer(help="Synchronise configuration.", no_args_is_help=True)
local_app = typer.Typer(help="Synchronise the local project folder.", no_args_is_help=True)
app.add_typer(sync_app, name="sync")
sync_app.add_typer(local_app, name="local")


@app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What `cloud sync local mcp` would change, to-db and to-disk; changes nothing."""
    from atrium.registry.sync import sync_status

    cli = state(ctx)
    registry = cli.registry()
    folder = cli.settings.mcp_dir.resolve()

    async def work(store: Store) -> SyncStatus:
        return await sync_status(store, registry, folder, cli.settings.project_dir)

    found = cli.with_store(work)
    if as_json:
        cli.print_json(_status_json(found))
        return
    _print_status(cli, found, display_path(folder, cli.settings.project_dir))


def _print_status(cli: CliState, found: SyncStatus, folder: str) -> None:
    if not found.to_db and not found.to_disk:
        cli.out.print(f"In sync: {folder} and the store hold the same servers.")
        return
    cli.out.print(f"[bold]to-db[/] ({escape(folder)} → store): {_count(found.to_db, 'server')}")
    for change in found.to_db:
        _print_db_change(cli, change)
    cli.out.print(f"[bold]to-disk[/] (store → {escape(folder)}): {_count(found.to_disk, 'file')}")
    for file in found.to_disk:
        added, removed = file.counts()
        mark, note = ("+", "new file") if file.before is None else ("~", "changed")
        cli.out.print(f"{mark} {escape(file.shown)} ({note}: +{added} -{removed} lines)")
    cli.out.print(
        "Nothing was changed. See a direction's whole diff with"
        " `atrium cloud sync local mcp --direction to-db|to-disk`; add -y to apply it."
    )


def _count(changes: Sequence[object], noun: str) -> str:
    if not changes:
        return "nothing to change"
    return f"{len(changes)} {noun if len(changes) == 1 else noun + 's'} would change"


def _status_json(found: SyncStatus) -> dict[str, Any]:
    to_db = [
        {
            "name": change.name,
            "kind": change.kind,
            "fields": [
                {"path": path, "before": before, "after": after}
                for path, before, after in change.fields
            ],
        }
        for change in found.to_db
    ]
    to_disk = [
        {"path": file.shown, "new": file.before is None, "diff": file.diff()}
        for file in found.to_disk
    ]
    return {"in_sync": not to_db and not to_disk, "to_db": to_db, "to_disk": to_disk}


class Direction(StrEnum):
    TO_DB = "to-db"
    TO_DISK = "to-disk"


@local_app.command("mcp")
def sync_mcp(
    ctx: typer.Context,
    direction: Annotated[
        Direction,
        typer.Option("--direction", "-d", help="to-db (YAML → store) or to-disk (store → YAML)."),
    ],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Apply; without it, only show the diff.")
    ] = False,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="Folder of server YAML (default: services/mcp).", file_okay=False
        ),
    ] = None,
) -> None:
    """Synchronise MCP servers between services/mcp/*.yaml and the store."""
    cli = state(ctx)
    folder = (directory or cli.settings.mcp_dir).resolve()
    if direction is Direction.TO_DB:
        _to_db(cli, folder if directory else None, yes)
    else:
        _to_disk(cli, folder, yes)


def _to_db(cli: CliState, directory: Path | None, apply: bool) -> None:
    from atrium.registry.sync import plan_to_db

    registry = cli.registry(directory)

    async def work(store: Store) -> list[DbChange]:
        changes = plan_to_db(registry, await store.servers.list())
        if apply and changes:
            await store.servers.save([change.record for change in changes])
        return changes

    changes = cli.with_store(work)
    for change in changes:
        _print_db_change(cli, change)
    _summary(cli, len(changes), apply, "server")


def _print_db_change(cli: CliState, change: DbChange) -> None:
    record = change.record
    if change.kind == "add":
        cli.out.print(f"[green]+ {record.name}[/] (new, port {record.port}, {record.transport})")
        return
    colour = "yellow" if change.kind == "update" else "red"
    note = " (disabled: removed from disk)" if change.kind == "disable" else ""
    cli.out.print(f"[{colour}]~ {record.name}[/]{note}")
    for path, before, after in change.fields:
        cli.out.print(f"    {escape(path)}: {_short(before)} → {_short(after)}", highlight=False)


def _short(value: Any) -> str:
    text = repr(value)
    return escape(text if len(text) <= 60 else text[:57] + "...")


def _to_disk(cli: CliState, directory: Path, apply: bool) -> None:
    from atrium.registry.sync import plan_to_disk, write_files

    async def work(store: Store) -> list[FileChange]:
        return plan_to_disk(await store.servers.list(), directory, cli.settings.project_dir)

    changes = cli.with_store(work)
    for change in changes:
        cli.out.print(escape(change.diff()), highlight=False, end="")
    if apply:
        write_files(changes)
    _summary(cli, len(changes), apply, "file")


def _summary(cli: CliState, count: int, applied: bool, noun: str) -> None:
    plural = noun if count == 1 else noun + "s"
    if count == 0:
        cli.out.print("Already in sync: nothing to change.")
    elif applied:
        cli.out.print(f"Applied: {count} {plural} changed.")
    else:
        cli.out.print(
            f"Dry run: {count} {plural} would change; nothing was changed. Rerun with -y to apply."
        )
