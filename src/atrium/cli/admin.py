"""``atrium admin users|clients|token``: the operator's side of the authorization server.

Secrets (a generated password, a client secret) are printed once and stored only as hashes;
there is no command that shows them again.

Disabling or deleting a user, a new password, or a role that grants fewer scopes ends what the
user holds at once: their sign-in sessions, and the access tokens issued to them so far (a
per-subject revocation; disabling, deleting and a new password end their refresh tokens too).
The gateway running for this project is told to reload before the command returns, so the
very next request is refused; a gateway elsewhere follows at its next poll.
"""

from __future__ import annotations

import secrets
import sys
import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from atrium.cli import admin_clients, admin_keys, admin_token
from atrium.cli.admin_token import reload_gateway
from atrium.cli.context import CliState, state
from atrium.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from atrium.auth.roles import Roles
    from atrium.store import Store, UserRecord

app = typer.Typer(no_args_is_help=True, help="Users, OAuth clients and tokens.")
users = typer.Typer(no_args_is_help=True, help="People who sign in (roles grant scopes).")
app.add_typer(users, name="users")
app.add_typer(admin_keys.keys, name="keys")
app.add_typer(admin_clients.clients, name="clients")
app.add_typer(admin_token.token, name="token")

RoleOption = Annotated[str, typer.Option("--role", help="admin, user, reader, or a custom role.")]


def check_role(cli: CliState, role: str) -> None:
    from atrium.auth.roles import Roles

    roles = Roles(cli.settings.oauth.roles)
    if not roles.known(role):
        raise UsageError(f"unknown role {role!r}; known: {', '.join(roles.names)}")


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """The password from stdin, or a generated one (then it must be shown)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if len(password) < 8:
            raise UsageError("the password must be at least 8 characters")
        return password, False
    return secrets.token_urlsafe(12), True


@users.command("create")
def users_create(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The name to sign in with.")],
    role: RoleOption = "user",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a user; without --password-stdin a password is generated and shown once."""
    cli = state(ctx)
    check_role(cli, role)
    password, generated = _read_password(password_stdin)
    cli.with_store(lambda store: create_user(store, username, password, role))
    cli.out.print(f"created user [bold]{username}[/] with role {role}", highlight=False)
    if generated:
        cli.out.print(f"password (shown once): {password}", highlight=False, markup=False)


async def create_user(store: Store, username: str, password: str, role: str) -> None:
    from atrium.auth.hashing import hash_password
    from atrium.store import UserRecord
    from atrium.store.errors import AlreadyExists

    if not username.strip() or len(username) > 255:
        raise UsageError("the user name must be 1-255 characters")
    record = UserRecord(
        id=uuid.uuid4().hex, username=username, password_hash=hash_password(password), role=role
    )
    try:
        await store.users.add(record)
    except AlreadyExists:
        raise UsageError(f"user {username!r} already exists") from None


@users.command("list")
def users_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List users with their role and whether they are disabled."""
    cli = state(ctx)
    records = cli.with_store(lambda store: store.users.list())
    rows = [
        {"username": r.username, "role": r.role, "disabled": r.disabled, "sub": r.id}
        for r in records
    ]
    if as_json:
        cli.print_json(rows)
        return
    from atrium.cli.tables import table

    cells = [[r.username, r.role, "yes" if r.disabled else "no", r.id] for r in records]
    cli.out.print(table(["USER", "ROLE", "DISABLED", "SUB"], cells))


@users.command("set-role")
def users_set_role(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Argument(help="admin, user, reader, or a custom role.")],
) -> None:
    """Change a user's role; if it grants fewer scopes, the tokens issued before end now."""
    from atrium.auth.roles import Roles

    cli = state(ctx)
    check_role(cli, role)
    roles = Roles(cli.settings.oauth.roles)
    cli.with_store(lambda store: set_role(store, roles, username, role))
    reload_gateway(cli)
    cli.out.print(f"user {username} now has role {role}", highlight=False)


async def set_role(store: Store, roles: Roles, username: str, role: str) -> None:
    """Store the role; end the user's tokens unless every scope they may carry is kept (an
    old role no longer configured carried scopes unknown here: its tokens end too)."""
    from atrium.auth.revocation_list import revoke_subject

    record = await _user(store, username)
    await store.users.set_role(username, role)
    if not roles.known(record.role) or roles.scopes_of(record.role) - roles.scopes_of(role):
        # Refresh tokens stay: a refresh grants only what the role grants today (auth.token).
        await revoke_subject(store, record.id, revoke_refresh=False)


@users.command("disable")
def users_disable(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument()],
    enable: Annotated[bool, typer.Option("--enable", help="Enable the user again.")] = False,
) -> None:
    """Stop a user now: no sign-in, and their sessions, access and refresh tokens end.

    With --enable they may sign in again (their old tokens stay ended).
    """
    cli = state(ctx)
    cli.with_store(lambda store: set_disabled(store, username, not enable))
    reload_gateway(cli)
    cli.out.print(f"user {username} {'enabled' if enable else 'disabled'}", highlight=False)


async def set_disabled(store: Store, username: str, disabled: bool) -> None:
    from atrium.auth.revocation_list import revoke_subject

    record = await _user(store, username)
    await store.users.set_disabled(username, disabled)
    if disabled:
        await revoke_subject(store, record.id, revoke_refresh=True)


@users.command("delete")
def users_delete(ctx: typer.Context, username: Annotated[str, typer.Argument()]) -> None:
    """Delete a user; their sessions, access and refresh tokens end now."""
    from atrium.auth.revocation_list import revoke_subject

    async def delete(store: Store) -> None:
        record = await store.users.delete(username)
        if record is None:
            await _user(store, username)  # raises NotFoundError naming the users there are
            return
        await revoke_subject(store, record.id, revoke_refresh=True)

    cli = state(ctx)
    cli.with_store(delete)
    reload_gateway(cli)
    cli.out.print(f"user {username} deleted", highlight=False)


@users.command("set-password")
def users_set_password(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument()],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Set a new password; without --password-stdin one is generated and shown once."""
    from atrium.auth.hashing import hash_password

    cli = state(ctx)
    password, generated = _read_password(password_stdin)
    hashed = hash_password(password)
    cli.with_store(lambda store: set_password(store, username, hashed))
    reload_gateway(cli)
    cli.out.print(f"password of {username} changed", highlight=False)
    if generated:
        cli.out.print(f"password (shown once): {password}", highlight=False, markup=False)


async def set_password(store: Store, username: str, password_hash: str) -> None:
    """A new password ends everything the old one let anyone obtain (it may have leaked)."""
    from atrium.auth.revocation_list import revoke_subject

    record = await _user(store, username)
    await store.users.set_password(username, password_hash)
    await revoke_subject(store, record.id, revoke_refresh=True)


async def _user(store: Store, username: str) -> UserRecord:
    record = await store.users.by_username(username)
    if record is None:
        known = [user.username for user in await store.users.list()]
        raise NotFoundError("user", username, known)
    return record
