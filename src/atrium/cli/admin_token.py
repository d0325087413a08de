"""``atrium admin token issue``: mint an access token without a browser, for operators and
tests (for example to give the MCP Inspector a ``Authorization: Bearer`` header).

The token is the same RFC 9068 JWT the token endpoint issues, signed with the project's key,
for one user and one hosted server, with at most the scopes the user's role grants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from atrium.cli.context import CliState, state
from atrium.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from atrium.store import Store, UserRecord

CLI_CLIENT_ID = "atrium-cli"
token = typer.Typer(no_args_is_help=True, help="Access tokens for operators and tests.")


@token.command("issue")
def issue(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", help="Whose token it is.")],
    server: Annotated[str, typer.Option("--server", help="The hosted server it is for.")],
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            "--scopes", help="Scopes (default: all of the user's role).", show_default=False
        ),
    ] = None,
    ttl: Annotated[
        int | None, typer.Option("--ttl", help="Lifetime in seconds (default: the settings').")
    ] = None,
) -> None:
    """Print an access token for USER on SERVER (audience: the server's resource URL)."""
    cli = state(ctx)
    cli.registry().get(server)  # a server of the project's YAML, or NotFoundError naming them
    lifetime = ttl if ttl is not None else cli.settings.oauth.access_token_ttl_s
    if not 60 <= lifetime <= 30 * 86400:
        raise UsageError("--ttl must be between 60 seconds and 30 days")
    print(mint(cli, user, server, scopes or [], lifetime))


def mint(cli: CliState, user: str, server: str, scopes: list[str], lifetime: int) -> str:
    """A token for ``user`` on ``server`` with at most the scopes the user's role grants."""
    from atrium.auth.keys import KeySet
    from atrium.auth.roles import Roles
    from atrium.auth.tokens import TokenIssuer

    settings = cli.settings
    record = cli.with_store(lambda store: _lookup(store, user))
    held = Roles(settings.oauth.roles).scopes_of(record.role)
    asked = [s for scope in scopes for s in scope.split()] or sorted(held)
    extra = set(asked) - held
    if extra:
        raise UsageError(
            f"--scopes: role {record.role!r} of {user!r} does not grant {' '.join(sorted(extra))}"
        )
    issuer = TokenIssuer(KeySet.load(settings.state_dir), settings.issuer, ttl_s=lifetime)
    value, _ = issuer.mint(
        subject=record.id,
        client_id=CLI_CLIENT_ID,
        audience=[settings.endpoint_for(server)],
        scopes=asked,
    )
    return str(value)


async def _lookup(store: Store, username: str) -> UserRecord:
    record = await store.users.by_username(username)
    if record is None:
        known = [u.username for u in await store.users.list()]
        raise NotFoundError("user", username, known)
    if record.disabled:
        raise UsageError(f"user {username!r} is disabled")
    return record
