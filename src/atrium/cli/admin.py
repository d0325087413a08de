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

from atrium.cli import admin_clients, admin_token
from atrium.cli.admin_token import reload_gateway
from atrium.cli.context import CliState, state
from atrium.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from atrium.auth.roles import Roles
    from atrium.store import Store, UserRecord

app = typer.Typer(no_args_is_help=True, help="Users, OAuth clients and tokens.")
users = typer.Typer(no_args_is_help=True, help="People who sign in (roles grant scopes).")
keys = typer.Typer(no_args_is_help=True, help="The keys access tokens are signed with.")
app.add_typer(users, name="users")
app.add_typer(keys, name="keys")
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


@keys.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    keep: Annotated[
        int, typer.Option("--keep", min=2, help="Keys kept (the new one and older ones).")
    ] = 2,
    caller: Annotated[
        bool,
        typer.Option(
            "--caller", help="Rotate the key the gateway signs caller assertions to backends with."
        ),
    ] = False,
    secrets: Annotated[
        bool,
        typer.Option(
            "--secrets", help="Rotate the key stored secrets are encrypted with (re-encrypts all)."
        ),
    ] = False,
    signs_after: Annotated[
        float | None,
        typer.Option(
            "--signs-after",
            min=0,
            help="Seconds the new key only verifies before it signs: longer than any gateway"
            " of the project takes to reload it (its poll interval) plus the clocks' skew"
            " [default: 30].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Publish a new signing key, which signs once every gateway has it; the previous keys
    still verify tokens until dropped.

    The keys are in the store, shared by every gateway of the project: the new one verifies
    at once everywhere (each gateway reloads within its poll interval; on PostgreSQL at once)
    and signs after --signs-after seconds. A key dropped from the set ends the tokens it
    signed. With --caller, the caller-assertion key instead: running backends pick the new
    public key up by themselves, no restart. With --secrets, the key of stored secrets (and
    of the signing keys in the store): every value is re-encrypted under a new key, then the
    old keys leave the ring; running servers read the new ring by themselves.
    """
    from atrium.auth.assertion import rotate_caller_keys

    cli = state(ctx)
    if caller and secrets:
        raise UsageError("--caller and --secrets rotate different keys: give one of them")
    if secrets:
        _rotate_secrets_key(cli)
        return
    if caller:
        kid = rotate_caller_keys(cli.settings.state_dir, cli.settings.issuer, keep=keep)
        reload_gateway(cli)
        cli.out.print(f"new caller-assertion key {kid}", highlight=False)
        return
    _rotate_signing_key(cli, keep, signs_after)


def _rotate_signing_key(cli: CliState, keep: int, signs_after: float | None) -> None:
    from atrium.auth.keys import DEFAULT_SIGNS_AFTER_S
    from atrium.auth.keystore import KeyStore

    # By default past two of the slowest poll (gateway.poll_s), and never under 30 s.
    default = max(DEFAULT_SIGNS_AFTER_S, 2 * cli.settings.poll_s)
    delay = default if signs_after is None else signs_after
    done = cli.with_store(
        lambda store: KeyStore.of(cli.settings, store).rotate(keep=keep, signs_after_s=delay)
    )
    reload_gateway(cli)
    when = done.key.signs_from.strftime("%Y-%m-%d %H:%M:%SZ")
    retired = ", ".join(done.retired) or "none"
    cli.out.print(
        f"new signing key {done.key.kid}: verify-only until {when}, then it signs;"
        f" keys retired: {retired}",
        highlight=False,
    )
    if done.early:
        cli.err.print(
            "warning: the key that was signing is retired, so a key not due yet signs at once:"
            " gateways that have not reloaded it refuse its tokens until they do. Rotate again"
            " only once the new key signs (`atrium admin keys list`).",
            highlight=False,
            markup=False,
        )


def _rotate_secrets_key(cli: CliState) -> None:
    from atrium.store.secrets import rotate_secret_key

    done = cli.with_store(lambda store: rotate_secret_key(store.secrets, cli.settings))
    retired = ", ".join(done.retired) or "none"
    cli.out.print(
        f"new secrets key {done.key_id}: {done.reencrypted} secret(s) re-encrypted;"
        f" keys retired: {retired}",
        highlight=False,
    )


@keys.command("list")
def keys_list(ctx: typer.Context) -> None:
    """The signing keys in the store, newest first, each with its state: signs, verify-only
    (until when), or retired (the unretired ones are published at /api/v1/core/oauth/jwks)."""
    from datetime import UTC, datetime

    from atrium.auth.keystore import key_states, signing_kid

    cli = state(ctx)
    states = cli.with_store(key_states)
    if not states:
        cli.out.print(
            "no signing key stored yet: the first gateway to start stores one (importing"
            " .atrium/signing-keys.json if there is one)",
            highlight=False,
        )
    now = datetime.now(UTC)
    signing = signing_kid(states, now)
    for key in states:
        cli.out.print(f"{key.kid}  {key.describe(now, signing)}", highlight=False)
