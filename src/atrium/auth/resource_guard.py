"""The resource-server side: who is calling a hosted server, and may they call it at all.

Per request (ARCHITECTURE.md, "One tools/call", step 4): verify the access token (RFC 9068),
that it is not revoked, that its audience is this server (RFC 8707 / RFC 9728 §7.4: a token
for server A is no good on server B), the DPoP proof when the token is bound or the server
requires one (RFC 9449 §7), the server's ``oauth.client_id`` restriction and its scopes.
Failures are challenges (RFC 6750 §3) naming the resource metadata URL, so a client can find
the authorization server from a 401 alone (MCP spec, "Authorization").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from atrium.auth.access_tokens import AccessClaims
from atrium.auth.dpop import ALGORITHMS
from atrium.auth.errors import OAuthError
from atrium.auth.metadata import PRM_PREFIX
from atrium.auth.roles import ADMIN, Reach, reach
from atrium.auth.server import AuthorizationServer
from atrium.registry.schema import OAuthPolicy


@dataclass(frozen=True)
class Caller:
    subject: str | None
    client_id: str | None
    scopes: frozenset[str]
    bound: bool = False  # DPoP-bound token, proof checked

    @property
    def anonymous(self) -> bool:
        return self.subject is None

    @property
    def admin(self) -> bool:
        return ADMIN in self.scopes

    def reach(self, policy: OAuthPolicy) -> Reach:
        """How far this caller's scopes reach on a server with ``policy`` (``roles.reach``).

        Decided by what the token grants, never by what else it carries: an extra scope the
        server does not name lifts nothing (issue 19 §3), and a token with only ``anonymous``
        reaches exactly as far as no token (issue 19 §2).
        """
        if self.anonymous:
            return "public"
        return reach(self.scopes, policy.scopes)


ANONYMOUS = Caller(subject=None, client_id=None, scopes=frozenset())


class Challenge(OAuthError):
    """A refusal with its ``WWW-Authenticate`` header (RFC 6750 §3, RFC 9449 §7.1)."""


@dataclass(frozen=True)
class RequestFacts:
    server: str
    method: str
    urls: tuple[str, ...]  # the request URL as the client may have built it (htu candidates)
    authorization: str | None
    dpop: tuple[str, ...]
    origin: str | None


class ResourceGuard:
    def __init__(self, auth: AuthorizationServer) -> None:
        self.auth = auth

    async def authenticate(self, facts: RequestFacts, policy: OAuthPolicy) -> Caller:
        if facts.authorization is None:
            if policy.required or policy.dpop == "required":
                raise self.challenge(facts, policy, None, "authentication required", status=401)
            return ANONYMOUS
        scheme, _, token = facts.authorization.partition(" ")
        scheme, token = scheme.lower(), token.strip()
        if scheme not in ("bearer", "dpop") or not token:
            raise self.challenge(facts, policy, "invalid_request", "use Bearer or DPoP", 400)
        try:
            claims = self.auth.verifier.verify(token)
        except OAuthError as error:
            raise self.challenge(facts, policy, "invalid_token", error.description) from None
        if self.auth.revocations.revoked(claims):
            raise self.challenge(facts, policy, "invalid_token", "the token was revoked")
        self._check_audience(facts, policy, claims)
        bound = await self._check_binding(facts, policy, scheme, token, claims)
        if policy.client_id is not None and claims.client_id != policy.client_id:
            raise self.challenge(
                facts, policy, "access_denied", "this server accepts one client only", 403
            )
        if policy.scopes and ADMIN not in claims.scopes and not claims.scopes & set(policy.scopes):
            raise self.insufficient(facts, policy, policy.scopes)
        return Caller(claims.subject, claims.client_id, claims.scopes, bound=bound)

    def _check_audience(
        self, facts: RequestFacts, policy: OAuthPolicy, claims: AccessClaims
    ) -> None:
        for audience in claims.audience:
            if audience == policy.audience or (
                self.auth.resources.server_of(audience) == facts.server
            ):
                return
        raise self.challenge(
            facts, policy, "invalid_token", "the token is not meant for this server (aud)"
        )

    async def _check_binding(
        self,
        facts: RequestFacts,
        policy: OAuthPolicy,
        scheme: str,
        token: str,
        claims: AccessClaims,
    ) -> bool:
        if claims.jkt is None:
            if scheme == "dpop":
                # RFC 9449 §7.2: the DPoP scheme with an unbound token is an error.
                raise self.challenge(facts, policy, "invalid_token", "the token is not DPoP-bound")
            if policy.dpop == "required":
                raise self.challenge(
                    facts, policy, "invalid_token", "this server requires DPoP-bound tokens"
                )
            return False
        if scheme != "dpop":
            raise self.challenge(
                facts, policy, "invalid_token", "a DPoP-bound token must use the DPoP scheme"
            )
        if policy.dpop == "off":
            raise self.challenge(facts, policy, "invalid_token", "this server does not take DPoP")
        try:
            # The key is checked before the proof is spent: a stolen token with proofs of
            # another key must not fill the replay cache.
            await self.auth.dpop.verify(
                facts.dpop, method=facts.method, urls=facts.urls, access_token=token, jkt=claims.jkt
            )
        except OAuthError as error:
            if error.status >= 500:
                raise  # the replay cache is unreachable or full: a server-side failure
            raise self.challenge(
                facts, policy, error.error, error.description, extra=error.headers
            ) from None
        return True

    def metadata_url(self, facts: RequestFacts) -> str:
        resource = self.auth.resources.url_for(facts.server, facts.origin)
        base, _, path = resource.partition("/api/v1/mcp/")
        return f"{base}{PRM_PREFIX}/api/v1/mcp/{path}"

    def challenge(
        self,
        facts: RequestFacts,
        policy: OAuthPolicy,
        error: str | None,
        description: str,
        status: int = 401,
        *,
        scopes: Sequence[str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> Challenge:
        params = [f'resource_metadata="{self.metadata_url(facts)}"']
        wanted = scopes if scopes is not None else policy.scopes
        if wanted:
            params.append(f'scope="{" ".join(wanted)}"')
        if error:
            params.append(f'error="{error}"')
            params.append(f'error_description="{_quoted(description)}"')
        bearer = "Bearer " + ", ".join(params)
        challenges = [bearer]
        if policy.dpop != "off":
            challenges.append(f'DPoP algs="{" ".join(ALGORITHMS)}", ' + ", ".join(params))
        if policy.dpop == "required":
            challenges.reverse()
        headers = {"WWW-Authenticate": ", ".join(challenges), **(extra or {})}
        return Challenge(error or "unauthorized", description, status=status, headers=headers)

    def insufficient(
        self, facts: RequestFacts, policy: OAuthPolicy, needed: Sequence[str]
    ) -> Challenge:
        """403 ``insufficient_scope`` naming what would do (RFC 6750 §3.1; MCP step-up)."""
        return self.challenge(
            facts,
            policy,
            "insufficient_scope",
            f"this needs one of the scopes: {' '.join(needed)}",
            403,
            scopes=needed,
        )


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")
