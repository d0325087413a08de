"""OAuth clients: finding one by ``client_id`` and authenticating it (RFC 6749 §2.3).

A ``client_id`` is either registered (dynamically, RFC 7591, or by an operator with
``atrium admin clients create``) and kept in the store, or an HTTPS URL naming a Client ID
Metadata Document that is fetched (``atrium.auth.cimd``). Redirect URIs match exactly, except
that a loopback redirect may use any port (RFC 8252 §7.3: native apps get an ephemeral one).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

from atrium.auth.cimd import MetadataFetcher, is_metadata_client_id
from atrium.auth.errors import invalid_client, invalid_request
from atrium.auth.hashing import token_matches
from atrium.auth.operator import CONSOLE_CALLBACK_PATH, CONSOLE_CLIENT_ID
from atrium.auth.uris import loopback_redirect_key
from atrium.store import ClientRecord, Store

PUBLIC = "none"
SECRET_METHODS = ("client_secret_basic", "client_secret_post")


@dataclass(frozen=True)
class Client:
    client_id: str
    kind: str  # dynamic | confidential | metadata | builtin
    name: str | None
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    auth_method: str
    scope: frozenset[str] | None  # None: no client-level limit
    secret_hash: str | None = None
    # The secret before a rotation, which authenticates until its expiry.
    previous_secret_hash: str | None = None
    previous_secret_until: datetime | None = None

    @property
    def confidential(self) -> bool:
        return self.auth_method in SECRET_METHODS

    @property
    def display_name(self) -> str:
        return self.name or self.client_id

    @classmethod
    def of(cls, record: ClientRecord) -> Client:
        return cls(
            client_id=record.client_id,
            kind=record.kind,
            name=record.name,
            redirect_uris=tuple(record.redirect_uris),
            grant_types=tuple(record.grant_types),
            auth_method=record.token_endpoint_auth_method,
            scope=frozenset(record.scope.split()) if record.scope is not None else None,
            secret_hash=record.secret_hash,
            previous_secret_hash=record.previous_secret_hash,
            previous_secret_until=record.previous_secret_expires_at,
        )


def console_client(public_url: str) -> Client:
    """Atrium's own web console: a public client (PKCE) known in code rather than stored, so
    it follows ``public_url`` and no one can revoke or re-register it; ``kind`` builtin."""
    return Client(
        client_id=CONSOLE_CLIENT_ID,
        kind="builtin",
        name="Atrium console",
        redirect_uris=(f"{public_url}{CONSOLE_CALLBACK_PATH}",),
        grant_types=("authorization_code",),
        auth_method=PUBLIC,
        scope=None,
    )


class ClientDirectory:
    def __init__(
        self,
        store: Store,
        documents: MetadataFetcher,
        *,
        dev_mode: bool,
        builtin: tuple[Client, ...] = (),
    ) -> None:
        self.store = store
        self.documents = documents
        self.dev_mode = dev_mode
        self.builtin = {client.client_id: client for client in builtin}

    async def find(self, client_id: str | None) -> Client:
        """The client, or ``invalid_client`` (unknown, revoked, or a document that won't load)."""
        if not client_id:
            raise invalid_request("client_id is required")
        if (known := self.builtin.get(client_id)) is not None:
            return known
        if is_metadata_client_id(client_id, dev_mode=self.dev_mode):
            document = await self.documents.fetch(client_id)
            return Client(
                client_id=client_id,
                kind="metadata",
                name=document.client_name,
                redirect_uris=document.redirect_uris,
                grant_types=document.grant_types,
                auth_method=PUBLIC,
                scope=frozenset(document.scope.split()) if document.scope else None,
            )
        record = await self.store.clients.get(client_id)
        if record is None or record.revoked_at is not None:
            raise invalid_client(f"client {client_id!r} is not registered here")
        return Client.of(record)

    async def authenticate(self, form: Mapping[str, str], authorization: str | None) -> Client:
        """RFC 6749 §2.3.1: HTTP Basic or form credentials; a public client sends its id only."""
        client_id, secret, method = _credentials(form, authorization)
        if not client_id:
            # §5.2: "no client authentication included" is invalid_client, not invalid_request.
            raise invalid_client("the client must identify itself (client_id or HTTP Basic)")
        client = await self.find(client_id)
        if client.confidential:
            if secret is None or client.secret_hash is None:
                raise invalid_client("this client must authenticate with its client_secret")
            if method != client.auth_method and not _basic_or_post(method, client.auth_method):
                raise invalid_client(f"this client authenticates with {client.auth_method}")
            if not _secret_matches(client, secret, datetime.now(UTC)):
                raise invalid_client("client authentication failed")
        elif secret is not None:
            raise invalid_client("a public client has no client_secret")
        return client


def _secret_matches(client: Client, secret: str, now: datetime) -> bool:
    """The current secret, or the one before a rotation while its overlap lasts."""
    if client.secret_hash is not None and token_matches(secret, client.secret_hash):
        return True
    previous, until = client.previous_secret_hash, client.previous_secret_until
    return (
        previous is not None
        and until is not None
        and now < until
        and token_matches(secret, previous)
    )


def _basic_or_post(used: str, registered: str) -> bool:
    # Both send the same secret; which of the two a client uses is not a security property.
    return used in SECRET_METHODS and registered in SECRET_METHODS


def _credentials(
    form: Mapping[str, str], authorization: str | None
) -> tuple[str | None, str | None, str]:
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise invalid_client("malformed HTTP Basic credentials") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise invalid_client("malformed HTTP Basic credentials")
        client_id = unquote(user.replace("+", " "))
        if form.get("client_id") not in (None, client_id):
            raise invalid_request("client_id in the body differs from the Basic credentials")
        return client_id, unquote(password.replace("+", " ")), "client_secret_basic"
    secret = form.get("client_secret")
    return form.get("client_id"), secret, "client_secret_post" if secret else PUBLIC


def redirect_allowed(requested: str, registered: tuple[str, ...]) -> bool:
    if requested in registered:
        return True
    asked = loopback_redirect_key(requested)
    return asked is not None and any(loopback_redirect_key(uri) == asked for uri in registered)
