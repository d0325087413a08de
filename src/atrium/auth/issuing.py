"""Credentials an operator issues outside the OAuth endpoints.

* Access tokens minted with the project's signing key: the same RFC 9068 JWT the token
  endpoint issues, for one hosted server (``atrium admin token issue``, ``connect --token``,
  and the CLI's own short-lived operator tokens, ``atrium.auth.operator``).
* Confidential clients (RFC 6749 §2.1) and their secrets (§2.3.1), stored only as hashes: a
  new client, and a new secret for an existing one with an overlap in which the old secret
  still authenticates, so the machines using it can be moved over without downtime.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from atrium.auth.access_tokens import TokenIssuer
from atrium.auth.hashing import new_token, token_hash
from atrium.auth.keys import KeySet
from atrium.auth.roles import Roles
from atrium.errors import NotFoundError, UsageError
from atrium.settings import Settings

if TYPE_CHECKING:  # the operator's token needs no database driver: imported when used
    from atrium.store import ClientRecord, Store

# How long a rotated secret keeps working unless told otherwise: a working day and some, for
# whoever deploys the new secret to every machine that uses it.
DEFAULT_SECRET_OVERLAP = timedelta(hours=24)


def mint_access_token(
    settings: Settings,
    *,
    subject: str,
    client_id: str,
    server: str,
    scopes: Iterable[str],
    ttl_s: int,
    keys: KeySet | None = None,
) -> str:
    """A token for ``subject`` on ``server`` (audience: its resource URL), signed with
    ``keys``, or the project's as the store holds them (read for this token)."""
    if keys is None:
        from atrium.auth.keystore import project_keys  # the store, loaded when needed

        keys = project_keys(settings)
    issuer = TokenIssuer(keys, settings.issuer, ttl_s=ttl_s)
    token, _ = issuer.mint(
        subject=subject,
        client_id=client_id,
        audience=[settings.endpoint_for(server)],
        scopes=list(scopes),
    )
    return str(token)


async def mint_user_token(
    store: Store,
    settings: Settings,
    *,
    username: str,
    client_id: str,
    server: str,
    scopes: Iterable[str],
    ttl_s: int,
) -> str:
    """A token for an enabled user, with at most the scopes the user's role grants (all of
    them when ``scopes`` is empty)."""
    from atrium.auth.keystore import KeyStore

    record = await store.users.by_username(username)
    if record is None:
        raise NotFoundError("user", username, [u.username for u in await store.users.list()])
    if record.disabled:
        raise UsageError(f"user {username!r} is disabled")
    held = Roles(settings.oauth.roles).scopes_of(record.role)
    asked = [s for scope in scopes for s in scope.split()] or sorted(held)
    if extra := set(asked) - held:
        raise UsageError(
            f"--scopes: role {record.role!r} of {username!r} does not grant"
            f" {' '.join(sorted(extra))}"
        )
    revoked = await store.grants.active_subject_revocations()
    await _after_revocation(revoked.get(record.id))
    return mint_access_token(
        settings,
        subject=record.id,
        client_id=client_id,
        server=server,
        scopes=asked,
        ttl_s=ttl_s,
        keys=await KeyStore.of(settings, store).load(),
    )


async def _after_revocation(until: datetime | None) -> None:
    """Wait out the second of a revocation of the user that is still running (under 1 s).

    A revocation covers every token issued (``iat``, whole seconds) within its second, so a
    token minted right after ``users set-role`` would otherwise be born revoked.
    """
    if until is not None and int(time.time()) <= until.timestamp():
        await asyncio.sleep(int(until.timestamp()) + 1 - time.time())


def confidential_client(
    name: str, scopes: Iterable[str], redirect_uris: Iterable[str]
) -> tuple[ClientRecord, str]:
    """A new confidential client and its secret (shown once; only its hash is kept).

    It may always use the client credentials grant; with redirect URIs, the authorization
    code grant (and refresh) too.
    """
    from atrium.store import ClientRecord

    uris = list(redirect_uris)
    secret = new_token()
    grants = ["client_credentials"] + (["authorization_code", "refresh_token"] if uris else [])
    record = ClientRecord(
        client_id=f"cc_{secrets.token_urlsafe(12)}",
        kind="confidential",
        name=name,
        secret_hash=token_hash(secret),
        redirect_uris=uris,
        grant_types=grants,
        application_type="web",
        token_endpoint_auth_method="client_secret_basic",
        scope=" ".join(scopes),
        metadata={"client_name": name},
    )
    return record, secret


@dataclass(frozen=True)
class RotatedSecret:
    client_id: str
    secret: str
    old_secret_until: datetime | None  # None: the old secret stopped working at once


async def rotate_client_secret(
    store: Store, client_id: str, overlap: timedelta = DEFAULT_SECRET_OVERLAP
) -> RotatedSecret:
    """Give a confidential client a new secret; the old one keeps working for ``overlap``.

    Only clients that authenticate with a secret have one to rotate: a public client (dynamic
    registration, a metadata document) is refused, as is a revoked or unknown one.
    """
    record = await store.clients.get(client_id)
    if record is None:
        known = [r.client_id for r in await store.clients.list("confidential")]
        raise NotFoundError("client", client_id, known)
    if record.secret_hash is None:
        raise UsageError(f"client {client_id!r} is a public client: it has no secret to rotate")
    if record.revoked_at is not None:
        raise UsageError(f"client {client_id!r} is revoked: create a new one instead")
    if overlap < timedelta(0):
        raise UsageError("--overlap: must not be negative")
    secret = new_token()
    rotated = await store.clients.rotate_secret(client_id, token_hash(secret), overlap)
    if rotated is None:  # revoked meanwhile
        raise UsageError(f"client {client_id!r} is revoked: create a new one instead")
    return RotatedSecret(client_id, secret, rotated.previous_secret_expires_at)
