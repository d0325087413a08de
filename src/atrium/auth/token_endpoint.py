"""The token endpoint (RFC 6749 §3.2): authorization code (§4.1.3, with PKCE, RFC 7636),
refresh (§6, rotated per OAuth 2.1 §4.3.1 / RFC 9700 §4.14.2) and client credentials (§4.4).

A code is checked completely before it is spent, so a wrong verifier or redirect URI leaves
the store as it was; spending it is one conditional update, so two racing exchanges cannot
both win. A code presented again revokes every token it produced (RFC 6749 §4.1.2). A refresh
token is single-use; presenting a rotated one revokes its whole family. With a DPoP proof the
tokens are bound to the proof's key (RFC 9449 §5), and a bound refresh token needs it again.

The proof is checked first but spent (recorded as used, §11.1) only once the client and its
grant have passed every check, right before the grant is: a request that is refused for any
other reason records nothing, so no one without a good grant can fill the replay cache.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from atrium.auth import pkce
from atrium.auth.clients import Client
from atrium.auth.dpop import Proof
from atrium.auth.errors import (
    OAuthError,
    invalid_dpop_proof,
    invalid_grant,
    invalid_request,
    invalid_scope,
    invalid_target,
    unauthorized_client,
    unsupported_grant_type,
)
from atrium.auth.hashing import new_token, token_hash
from atrium.auth.server import AuthorizationServer
from atrium.auth.wire import oauth_error_response, read_form, token_response
from atrium.store import RefreshRecord


class TokenEndpoint:
    def __init__(self, auth: AuthorizationServer) -> None:
        self.auth = auth

    async def handle(self, request: Request) -> Response:
        try:
            form = await read_form(request)
            client = await self.auth.clients.authenticate(
                form, request.headers.get("authorization")
            )
            proof = self._proof(request)
            grant = form.get("grant_type")
            if grant == "authorization_code":
                body = await self._code(client, form, proof)
            elif grant == "refresh_token":
                body = await self._refresh(client, form, proof)
            elif grant == "client_credentials":
                body = await self._client_credentials(client, form, proof)
            else:
                raise unsupported_grant_type(f"grant_type {grant!r} is not supported")
        except OAuthError as error:
            return oauth_error_response(error)
        if client.kind != "metadata":
            # Only an issued token is use: a failed request must not keep alive a registration
            # that never led to a token (register.py forgets those).
            await self.auth.store.clients.touch(client.client_id)
        return token_response(body)

    def _proof(self, request: Request) -> Proof | None:
        """The request's DPoP proof, checked but not yet spent (``_spend``)."""
        proofs = request.headers.getlist("dpop")
        if not proofs:
            return None
        return self.auth.dpop.check(
            proofs, method="POST", urls=[self.auth.endpoint("token"), str(request.url)]
        )

    async def _spend(self, proof: Proof | None) -> str | None:
        """Record the proof as used, now that the grant is good; the key it binds to."""
        if proof is None:
            return None
        await self.auth.dpop.spend(proof)
        return proof.jkt

    async def _code(
        self, client: Client, form: dict[str, str], proof: Proof | None
    ) -> dict[str, Any]:
        if "authorization_code" not in client.grant_types:
            raise unauthorized_client("this client may not use the authorization_code grant")
        code = form.get("code")
        if not code:
            raise invalid_request("code is required")
        code_hash = token_hash(code)
        record = await self.auth.store.grants.get_code(code_hash)
        if record is None or record.client_id != client.client_id:
            raise invalid_grant("the code is unknown or was issued to another client")
        if record.used_at is not None:
            await self._revoke_family(record.family_id)
            raise invalid_grant("the code was already used; the tokens it gave are revoked")
        if record.expires_at <= self._now():
            raise invalid_grant("the code has expired")
        if form.get("redirect_uri", record.redirect_uri) != record.redirect_uri:
            raise invalid_grant("redirect_uri differs from the authorization request's")
        pkce.verify(form.get("code_verifier"), record.code_challenge)
        audience = self._narrowed_audience(form, record.resource)
        if record.jkt is not None and _key(proof) != record.jkt:
            raise invalid_dpop_proof("the code is bound to another DPoP key (dpop_jkt)")
        jkt = await self._spend(proof)
        spent, reused = await self.auth.store.grants.consume_code(code_hash)
        if spent is None or reused:
            await self._revoke_family(record.family_id)
            raise invalid_grant("the code was already used; the tokens it gave are revoked")
        return await self._issue(
            client,
            subject=record.user_id,
            scopes=record.scope.split(),
            audience=audience,
            jkt=jkt,
            family=record.family_id,
        )

    async def _refresh(
        self, client: Client, form: dict[str, str], proof: Proof | None
    ) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise invalid_request("refresh_token is required")
        grants = self.auth.store.grants
        record = await grants.get_refresh(token_hash(token))
        if record is None or record.client_id != client.client_id:
            raise invalid_grant("the refresh token is unknown or belongs to another client")
        if record.revoked_at is not None:
            raise invalid_grant("the refresh token was revoked")
        if record.rotated_at is not None:
            await self._revoke_family(record.family_id)
            raise invalid_grant("the refresh token was already used; its family is revoked")
        if record.expires_at <= self._now():
            raise invalid_grant("the refresh token has expired")
        if record.jkt is not None and _key(proof) != record.jkt:
            raise invalid_dpop_proof("the refresh token is bound to another DPoP key")
        granted = record.scope.split()
        asked = form["scope"].split() if form.get("scope") else granted
        if not set(asked) <= set(granted):
            raise invalid_scope("a refresh cannot widen the scope (RFC 6749 §6)")
        scopes = await self._current_scopes(record.subject, asked)
        audience = self._narrowed_audience(form, record.resource)
        jkt = await self._spend(proof)
        new_token_value = new_token()
        outcome = await grants.rotate_refresh(
            record.token_hash, self._refresh_record(record, new_token_value, " ".join(scopes))
        )
        if outcome == "reused":
            await self._revoke_family(record.family_id)
            raise invalid_grant("the refresh token was already used; its family is revoked")
        if outcome != "rotated":
            raise invalid_grant(f"the refresh token is {outcome}")
        return self._response(
            subject=record.subject,
            client=client,
            scopes=scopes,
            audience=audience,
            jkt=record.jkt or jkt,
            family=record.family_id,
            refresh=new_token_value,
        )

    async def _client_credentials(
        self, client: Client, form: dict[str, str], proof: Proof | None
    ) -> dict[str, Any]:
        if not client.confidential or "client_credentials" not in client.grant_types:
            raise unauthorized_client("only confidential clients may use client_credentials")
        allowed = client.scope or frozenset()
        asked = form["scope"].split() if form.get("scope") else sorted(allowed)
        if not set(asked) <= allowed:
            raise invalid_scope(
                "the client may not ask for " + " ".join(sorted(set(asked) - allowed))
            )
        audience = self.auth.audience_for(_resources(form))
        return self._response(
            subject=client.client_id,
            client=client,
            scopes=asked,
            audience=audience,
            jkt=await self._spend(proof),
            family=None,
            refresh=None,
        )

    async def _issue(
        self,
        client: Client,
        *,
        subject: str,
        scopes: list[str],
        audience: list[str],
        jkt: str | None,
        family: str,
    ) -> dict[str, Any]:
        refresh = None
        if "refresh_token" in client.grant_types:
            refresh = new_token()
            now = self._now()
            await self.auth.store.grants.add_refresh(
                RefreshRecord(
                    token_hash=token_hash(refresh),
                    family_id=family,
                    client_id=client.client_id,
                    subject=subject,
                    scope=" ".join(scopes),
                    resource=" ".join(audience),
                    # RFC 9449 §5: a public client's refresh token is bound to its DPoP key.
                    jkt=jkt if not client.confidential else None,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.auth.options.refresh_token_ttl_s),
                )
            )
        return self._response(
            subject=subject,
            client=client,
            scopes=scopes,
            audience=audience,
            jkt=jkt,
            family=family,
            refresh=refresh,
        )

    def _response(
        self,
        *,
        subject: str,
        client: Client,
        scopes: list[str],
        audience: list[str],
        jkt: str | None,
        family: str | None,
        refresh: str | None,
    ) -> dict[str, Any]:
        token, claims = self.auth.tokens.mint(
            subject=subject,
            client_id=client.client_id,
            audience=audience,
            scopes=scopes,
            jkt=jkt,
            family=family,
        )
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": claims.expires_at - claims.issued_at,
            "scope": claims.scope,
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        return body

    def _refresh_record(self, old: RefreshRecord, token: str, scope: str) -> RefreshRecord:
        now = self._now()
        return RefreshRecord(
            token_hash=token_hash(token),
            family_id=old.family_id,
            client_id=old.client_id,
            subject=old.subject,
            scope=scope,
            resource=old.resource,
            jkt=old.jkt,
            created_at=now,
            # The family keeps its original end: rotation must not extend a grant forever.
            expires_at=old.expires_at,
        )

    async def _current_scopes(self, subject: str, asked: list[str]) -> list[str]:
        """A refresh gives no more than the user's role grants today (roles change)."""
        user = await self.auth.store.users.get(subject)
        if user is None or user.disabled:
            raise invalid_grant("the user of this grant no longer exists or is disabled")
        held = self.auth.roles.scopes_of(user.role)
        return [scope for scope in asked if scope in held]

    def _narrowed_audience(self, form: dict[str, str], granted: str | None) -> list[str]:
        asked = _resources(form)
        allowed = granted.split() if granted else self.auth.audience_for([])
        if not asked:
            return allowed
        if not set(asked) <= set(allowed):
            # The user consented to these audiences only (RFC 8707 §2.2).
            raise invalid_target("resource was not part of the authorization (RFC 8707 §2.2)")
        return self.auth.audience_for(asked)

    async def _revoke_family(self, family: str) -> None:
        until = self._now() + timedelta(seconds=self.auth.options.refresh_token_ttl_s)
        await self.auth.store.grants.revoke_family(family, until)
        self.auth.revocations.add(family, "family")

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.auth.clock(), UTC)


def _key(proof: Proof | None) -> str | None:
    return proof.jkt if proof is not None else None


def _resources(form: dict[str, str]) -> list[str]:
    return form["resource"].split() if form.get("resource") else []
