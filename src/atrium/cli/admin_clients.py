"""``atrium admin clients create|list|show|revoke|rotate-secret``: confidential OAuth clients.

Dynamic registration (RFC 7591) serves public clients that sign people in; an operator creates
confidential clients here, for machines (client credentials) or for web apps with a back end.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from atrium.cli.context import CliState, state
from atrium.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from atrium.store import ClientRecord, Store

clients = typer.Typer(no_args_is_help=True, help="Confidential OAuth clients.")


@clients.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name people will recognise on consent pages.")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="A scope it may get (repeatable).")
    ] = None,
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option("--redirect-uri", help="For the authorization code grant (repeatable)."),
    ] = None,
) -> None:
    """Create a confidential client; its secret is shown once.

    With --redirect-uri it may sign people in (authorization code); it can always use the
    client credentials grant, with at most the scopes given by --scope.
    """
    from atrium.auth.errors import OAuthError
    from atrium.auth.redirects import check_redirect
    from atrium.auth.roles import Roles

    cli = state(ctx)
    scopes = list(scope or [])
    unknown = set(scopes) - set(Roles(cli.settings.oauth.roles).all_scopes())
    if unknown:
        raise UsageError(f"--scope: unknown scope(s) {', '.join(sorted(unknown))}")
    uris = list(redirect_uri or [])
    for uri in uris:
        try:
            check_redirect(uri, "web", dev_mode=True)
        except OAuthError as exc:  # its description says what is wrong
            raise UsageError(f"--redirect-uri {uri}: {exc.description}") from None
    from atrium.auth.issuing import confidential_client

    record, secret = confidential_client(name, scopes, uris)
    cli.with_store(lambda store: store.clients.add(record))
    cli.out.print(f"client_id:     {record.client_id}", highlight=False, markup=False)
    cli.out.print(f"client_secret: {secret}", highlight=False, markup=False)
    cli.out.print("The secret is shown only now; store it safely.", highlight=False)


def _describe(record: ClientRecord) -> dict[str, Any]:
    return {
        "client_id": record.client_id,
        "kind": record.kind,
        "name": record.name,
        "scope": record.scope,
        "grant_types": record.grant_types,
        "redirect_uris": record.redirect_uris,
        "auth_method": record.token_endpoint_auth_method,
        "created_at": record.created_at.isoformat() if record.created_at else None,
        "last_used_at": record.last_used_at.isoformat() if record.last_used_at else None,
        "revoked": record.revoked_at is not None,
    }


@clients.command("list")
def list_clients(
    ctx: typer.Context,
    kind: Annotated[
        str | None, typer.Option("--kind", help="confidential, dynamic or metadata.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List registered clients (confidential and dynamically registered)."""
    cli = state(ctx)
    if kind not in (None, "confidential", "dynamic", "metadata"):
        raise UsageError(f"--kind: {kind!r} is not confidential, dynamic or metadata")
    records = cli.with_store(lambda store: store.clients.list(kind))  # type: ignore[arg-type]
    rows = [_describe(record) for record in records]
    if as_json:
        cli.print_json(rows)
        return
    from atrium.cli.tables import table

    cells = [
        [r["client_id"], r["kind"], "revoked" if r["revoked"] else "active", r["name"] or ""]
        for r in rows
    ]
    cli.out.print(table(["CLIENT_ID", "KIND", "STATE", "NAME"], cells, prose_last=True))


@clients.command("show")
def show(ctx: typer.Context, client_id: Annotated[str, typer.Argument()]) -> None:
    """Show one client (never its secret: only a hash is stored)."""
    cli = state(ctx)
    cli.print_json(_describe(_get(cli, client_id)))


@clients.command("revoke")
def revoke(ctx: typer.Context, client_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a client: it can no longer authenticate, sign people in or refresh."""
    cli = state(ctx)
    _get(cli, client_id)
    cli.with_store(lambda store: store.clients.revoke(client_id))
    cli.out.print(f"client {client_id} revoked", highlight=False)


@clients.command("rotate-secret")
def rotate_secret(
    ctx: typer.Context,
    client_id: Annotated[str, typer.Argument()],
    overlap: Annotated[
        str,
        typer.Option(
            "--overlap",
            help="How long the old secret keeps working: 90s, 30m, 1h, 2d; 0 ends it now.",
        ),
    ] = "24h",
) -> None:
    """Give a confidential client a new secret (shown once); the old one works until the
    overlap ends, so the machines using it can move over without downtime."""
    from atrium.auth.issuing import rotate_client_secret

    cli = state(ctx)
    window = parse_duration(overlap, "--overlap")
    rotated = cli.with_store(lambda store: rotate_client_secret(store, client_id, window))
    cli.out.print(f"client_id:     {rotated.client_id}", highlight=False, markup=False)
    cli.out.print(f"client_secret: {rotated.secret}", highlight=False, markup=False)
    cli.out.print("The secret is shown only now; store it safely.", highlight=False)
    if rotated.old_secret_until is None:
        cli.out.print("The old secret no longer works.", highlight=False)
    else:
        until = rotated.old_secret_until.strftime("%Y-%m-%d %H:%M:%S UTC")
        cli.out.print(f"The old secret works until {until}.", highlight=False)


_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``2d`` or a number of seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{option}: {text!r} is not a duration such as 90s, 30m, 1h or 2d")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def _get(cli: CliState, client_id: str) -> ClientRecord:
    async def find(store: Store) -> tuple[ClientRecord | None, list[str]]:
        record = await store.clients.get(client_id)
        known = [] if record else [r.client_id for r in await store.clients.list()]
        return record, known

    record, known = cli.with_store(find)
    if record is None:
        raise NotFoundError("client", client_id, known)
    return record
