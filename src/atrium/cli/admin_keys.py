"""``atrium admin keys rotate|list``: the keys in the store that every replica signs with.

Three kinds, each a ring in the store sealed under the master key (issue 18): the access-token
signing keys (the default), the caller-assertion keys (``--caller``) and the session key
(``--session``); and, with ``rotate --secrets``, the master key itself. A rotated-in key verifies
everywhere at once and signs only after ``--signs-after`` seconds, once every process holds it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from atrium.cli.admin_token import reload_gateway
from atrium.cli.context import CliState, state
from atrium.errors import UsageError

if TYPE_CHECKING:
    from atrium.store import Store
    from atrium.store.keys import Added

keys = typer.Typer(
    no_args_is_help=True, help="The keys tokens, sessions and assertions are signed with."
)

CallerOption = Annotated[
    bool,
    typer.Option("--caller", help="The keys the gateway signs caller assertions to backends with."),
]
SessionOption = Annotated[
    bool,
    typer.Option(
        "--session", help="The key of console sessions, sign-in forms and MCP session ids."
    ),
]
_FIRST = {
    "access-token": ".atrium/signing-keys.json",
    "caller-assertion": ".atrium/caller-keys.json",
    "session": ".atrium/session-key",
}


@keys.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    keep: Annotated[
        int, typer.Option("--keep", min=2, help="Keys kept (the new one and older ones).")
    ] = 2,
    caller: CallerOption = False,
    session: SessionOption = False,
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
            help="Seconds the new key only verifies before it signs: longer than any process"
            " of the project takes to reload it (its poll interval) plus the clocks' skew"
            " [default: 30].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Publish a new signing key, which signs once every process has it; the previous keys
    still verify until a later rotation drops them.

    The keys are in the store, shared by every gateway and supervisor of the project: the new
    one verifies at once everywhere (each reloads within its poll interval; on PostgreSQL at
    once) and signs after --signs-after seconds. A key dropped ends what it signed. With
    --caller, the caller-assertion keys: the supervisors write the new public key for their
    backends, no restart. With --session, the session key: sessions signed with a kept key stay
    valid. With --secrets, the key of stored secrets (and of the keys in the store): every value
    is re-encrypted under a new key, then the old keys leave the ring.
    """
    cli = state(ctx)
    if caller + session + secrets > 1:
        raise UsageError("--caller, --session and --secrets rotate different keys: give one")
    if secrets:
        _rotate_secrets_key(cli)
        return
    # By default past two of the slowest poll (gateway.poll_s), and never under 30 s.
    from atrium.auth.keys import DEFAULT_SIGNS_AFTER_S

    delay = max(DEFAULT_SIGNS_AFTER_S, 2 * cli.settings.poll_s)
    delay = delay if signs_after is None else signs_after
    what = "caller-assertion key" if caller else "session key" if session else "signing key"
    done = cli.with_store(lambda store: _rotate(cli, store, caller, session, keep, delay))
    reload_gateway(cli)
    _report(cli, what, done)


async def _rotate(
    cli: CliState, store: Store, caller: bool, session: bool, keep: int, delay: float
) -> Added:
    from atrium.auth.caller_keystore import CallerKeyStore
    from atrium.auth.keystore import KeyStore
    from atrium.auth.session_keys import SessionKeyStore

    settings = cli.settings
    if caller:
        # Publishes the new public set in this folder too, for the backends started here.
        return await CallerKeyStore.of(settings, store).rotate(keep=keep, signs_after_s=delay)
    if session:
        return await SessionKeyStore.of(settings, store).rotate(keep=keep, signs_after_s=delay)
    return await KeyStore.of(settings, store).rotate(keep=keep, signs_after_s=delay)


def _report(cli: CliState, what: str, done: Added) -> None:
    when = done.key.signs_from.strftime("%Y-%m-%d %H:%M:%SZ")
    retired = ", ".join(done.retired) or "none"
    cli.out.print(
        f"new {what} {done.key.kid}: verify-only until {when}, then it signs;"
        f" keys retired: {retired}",
        highlight=False,
    )
    if done.early:
        cli.err.print(
            "warning: the key that was signing is retired, so a key not due yet signs at once:"
            " processes that have not reloaded it refuse what it signs until they do. Rotate"
            " again only once the new key signs (`atrium admin keys list`).",
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
def keys_list(
    ctx: typer.Context, caller: CallerOption = False, session: SessionOption = False
) -> None:
    """The keys in the store, newest first, each with its state: signs, verify-only (until
    when), or retired. The access-token keys by default (the unretired ones are published at
    /api/v1/core/oauth/jwks)."""
    from atrium.auth.caller_keystore import PURPOSE as CALLER
    from atrium.auth.keystore import PURPOSE as ACCESS_TOKEN
    from atrium.auth.keystore import key_states, signing_kid
    from atrium.auth.session_keys import PURPOSE as SESSION

    cli = state(ctx)
    if caller and session:
        raise UsageError("--caller and --session list different keys: give one of them")
    purpose = CALLER if caller else SESSION if session else ACCESS_TOKEN
    states = cli.with_store(lambda store: key_states(store, purpose))
    if not states:
        cli.out.print(
            "no signing key stored yet: the first gateway to start stores one (importing"
            f" {_FIRST[purpose]} if there is one)",
            highlight=False,
        )
    now = datetime.now(UTC)
    signing = signing_kid(states, now)
    for key in states:
        cli.out.print(f"{key.kid}  {key.describe(now, signing)}", highlight=False)
