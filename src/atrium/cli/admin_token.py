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
from typing import Annotated

import typer

from atrium.cli.context import CliState, state
from atrium.errors import UsageError

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
    print(user_token(cli, user, server, scopes or [], lifetime))


@token.command("revoke")
def revoke(
    ctx: typer.Context,
    value: Annotated[str, typer.Argument(help="The access token, or its jti.", metavar="TOKEN")],
) -> None:
    """Revoke an access token (given whole, or by its jti) on every gateway of the project."""
    from atrium.auth.access_tokens import MAX_LIFETIME_S, TokenVerifier
    from atrium.auth.errors import OAuthError
    from atrium.auth.keystore import project_keys

    cli = state(ctx)
    settings = cli.settings
    if value.count(".") == 2:
        verifier = TokenVerifier(project_keys(settings), settings.issuer)
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


def user_token(cli: CliState, user: str, server: str, scopes: list[str], lifetime: int) -> str:
    """A token for ``user`` on ``server`` with at most the scopes the user's role grants."""
    from atrium.auth.issuing import mint_user_token
    from atrium.auth.operator import OPERATOR_CLIENT_ID

    return cli.with_store(
        lambda store: mint_user_token(
            store,
            cli.settings,
            username=user,
            client_id=OPERATOR_CLIENT_ID,
            server=server,
            scopes=scopes,
            ttl_s=lifetime,
        )
    )
