"""``atrium admin token issue|revoke``: mint an access token without a browser, for operators
and tests (for example to give the MCP Inspector a ``Authorization: Bearer`` header), and
revoke one.

The token is the same RFC 9068 JWT the token endpoint issues, signed with the project's key,
for one user and one hosted server, with at most the scopes the user's role grants; it is
revoked like any other, here or at the revocation endpoint (RFC 7009, client ``atrium-cli``).
After a change that must stop tokens, ``reload_gateway`` asks the gateway running for this
project to apply it at once; gateways elsewhere pick it up at their next poll (2 s).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
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
    from atrium.auth.access_tokens import MAX_LIFETIME_S

    lifetime = ttl if ttl is not None else cli.settings.oauth.access_token_ttl_s
    # The verifiers refuse a token living longer than MAX_LIFETIME_S: never mint one.
    if not 60 <= lifetime <= MAX_LIFETIME_S:
        raise UsageError(f"--ttl must be between 60 seconds and {MAX_LIFETIME_S // 86400} days")
    print(mint(cli, user, server, scopes or [], lifetime))


@token.command("revoke")
def revoke(
    ctx: typer.Context,
    value: Annotated[str, typer.Argument(help="The access token, or its jti.", metavar="TOKEN")],
) -> None:
    """Revoke an access token (given whole, or by its jti) on every gateway of the project."""
    from atrium.auth.access_tokens import MAX_LIFETIME_S, TokenVerifier
    from atrium.auth.errors import OAuthError
    from atrium.auth.keys import KeySet

    cli = state(ctx)
    settings = cli.settings
    if value.count(".") == 2:
        verifier = TokenVerifier(KeySet.load(settings.state_dir), settings.issuer)
        try:
            claims = verifier.verify(value)
        except OAuthError as error:
            raise UsageError(
                f"not a live access token of this project: {error.description}"
            ) from None
        jti, until = claims.jti, claims.expires_at
    else:
        # A jti alone says nothing of its token's expiry: kept as long as any token can live.
        jti, until = value, int(time.time()) + MAX_LIFETIME_S
    expires = datetime.fromtimestamp(until, UTC)
    cli.with_store(lambda store: store.grants.revoke_jti(jti, expires))
    reload_gateway(cli)
    cli.out.print(f"access token {jti} revoked", highlight=False, markup=False)


def reload_gateway(cli: CliState) -> None:
    """Ask the gateway running for this project to reload its revocations and signing keys
    now. Best effort: with none running here, there is nothing to tell."""
    from atrium.supervisor import control

    message = {"op": "reload-auth"}
    try:
        asyncio.run(control.request(cli.settings.state_dir, message, timeout_s=10))
    except control.NotRunning:
        return
    except control.ControlError as exc:
        cli.err.print(
            f"warning: the running gateway did not reload ({exc}); it will within seconds",
            highlight=False,
            markup=False,
        )


def mint(cli: CliState, user: str, server: str, scopes: list[str], lifetime: int) -> str:
    """A token for ``user`` on ``server`` with at most the scopes the user's role grants."""
    from atrium.auth.access_tokens import TokenIssuer
    from atrium.auth.keys import KeySet
    from atrium.auth.roles import Roles

    settings = cli.settings
    record, revoked_until = cli.with_store(lambda store: _lookup(store, user))
    held = Roles(settings.oauth.roles).scopes_of(record.role)
    asked = [s for scope in scopes for s in scope.split()] or sorted(held)
    extra = set(asked) - held
    if extra:
        raise UsageError(
            f"--scopes: role {record.role!r} of {user!r} does not grant {' '.join(sorted(extra))}"
        )
    _after_revocation(revoked_until)
    issuer = TokenIssuer(KeySet.load(settings.state_dir), settings.issuer, ttl_s=lifetime)
    value, _ = issuer.mint(
        subject=record.id,
        client_id=CLI_CLIENT_ID,
        audience=[settings.endpoint_for(server)],
        scopes=asked,
    )
    return str(value)


def _after_revocation(until: datetime | None) -> None:
    """Wait out the second of a revocation of the user that is still running (under 1 s).

    A revocation covers every token issued (``iat``, whole seconds) within its second, so a
    token minted right after ``users set-role`` would otherwise be born revoked.
    """
    if until is not None and int(time.time()) <= until.timestamp():
        time.sleep(int(until.timestamp()) + 1 - time.time())


async def _lookup(store: Store, username: str) -> tuple[UserRecord, datetime | None]:
    """The user (enabled) and until when the tokens issued to them are revoked, if they are."""
    record = await store.users.by_username(username)
    if record is None:
        known = [u.username for u in await store.users.list()]
        raise NotFoundError("user", username, known)
    if record.disabled:
        raise UsageError(f"user {username!r} is disabled")
    revoked = await store.grants.active_subject_revocations()
    return record, revoked.get(record.id)
