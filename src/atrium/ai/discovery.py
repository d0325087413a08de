"""Which MCP servers an agent's run reaches, and as whom.

With ``auto_discover: true`` a run sees every enabled server of the registry (as stored: what
the gateway serves) that its user may call, each reached through the gateway like any other
client, with a token minted for that user (``RunAs``) and that server alone. So the gateway's
scopes, tool filtering, rate limits and audit apply to an agent exactly as to its user; the
audit and metrics mark these calls ``in-app`` (client ``atrium-agents``). The tokens live five
minutes and are minted again as they near their end (``RunAuth``), so a long run never calls
with an expired one.

A server the user could not call anyway (a scope the user lacks, another client only, DPoP
required: our tokens are bearer tokens) is left out rather than failing on every run. The
servers of the extra ``.mcp.json`` files (``mcp_configs``) are added for admins' runs only: they
act with the operator's own credentials, outside the gateway. The agent's
``servers:`` narrows both.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx2
from pydantic import ValidationError

from atrium.ai.agents import Agent
from atrium.ai.config import AiConfig
from atrium.auth.issuing import mint_access_token
from atrium.auth.operator import AGENT_CLIENT_ID
from atrium.auth.roles import ADMIN
from atrium.registry.schema import parse_server_config
from atrium.settings import Settings

if TYPE_CHECKING:  # the MCP client loads when a run starts, not with the gateway
    from atrium.client.manager import AuthFor
    from atrium.client.mcpjson import ServerSpec
    from atrium.store import ServerRecord

TOKEN_TTL_S = 300
RENEW_BEFORE_S = 60  # a token with less left than this is not sent again


@dataclass(frozen=True)
class RunAs:
    """Whose run it is: the subject the audit names and the scopes its tokens carry, never
    more than the user holds. ``depth`` counts agents running inside agents (``run_agent``)."""

    subject: str
    scopes: frozenset[str]
    depth: int = 0
    since: float = field(default_factory=time.time)  # when the run started (``RunAuth``)


Vet = Callable[[], Awaitable[None]]
"""Raises when the run's user may no longer act (revoked, disabled since the run started)."""


class RunAuth(httpx2.Auth):
    """``Authorization: Bearer`` with a token for one server, minted again before it ends.

    Before minting again it asks ``vet`` whether the user still may: a run outlives the tokens
    it started with, and must not outlive the user's revocation (``users disable``, a narrower
    role) by minting fresh ones."""

    def __init__(self, settings: Settings, run_as: RunAs, server: str, vet: Vet) -> None:
        self._settings, self._run_as, self._server, self._vet = settings, run_as, server, vet
        self._token, self._expires = "", 0.0

    def _stale(self) -> bool:
        return time.time() > self._expires - RENEW_BEFORE_S

    def token(self) -> str:
        if self._stale():
            self._token = mint_access_token(
                self._settings,
                subject=self._run_as.subject,
                client_id=AGENT_CLIENT_ID,
                server=self._server,
                scopes=sorted(self._run_as.scopes),
                ttl_s=TOKEN_TTL_S,
            )
            self._expires = time.time() + TOKEN_TTL_S
        return self._token

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if self._stale() and self._expires:  # the first token was vetted by the run's start
            await self._vet()
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request


@dataclass(frozen=True)
class Discovered:
    """The servers of a run, and the registry servers left out with the reason."""

    specs: list[ServerSpec]
    left_out: dict[str, str]


def discover(
    settings: Settings,
    config: AiConfig,
    agent: Agent,
    run_as: RunAs,
    records: Iterable[ServerRecord],
) -> Discovered:
    """The servers ``agent`` reaches when ``run_as`` runs it; ``ConfigError`` for a broken
    ``.mcp.json``."""
    from atrium.client.connect import gateway_url
    from atrium.client.mcpjson import HttpTarget, ServerSpec
    from atrium.client.sources import file_specs

    specs: list[ServerSpec] = []
    left_out: dict[str, str] = {}
    if config.auto_discover:
        for record in records:
            if not agent.uses_server(record.name):
                continue
            reason = _why_not(record, run_as)
            if reason is not None:
                left_out[record.name] = reason
                continue
            target = HttpTarget(gateway_url(settings, record.name), "http")
            source = record.source or "the registry"
            specs.append(ServerSpec(record.name, target, source=source, registry=True))
    if ADMIN in run_as.scopes:
        # Their credentials are the operator's (headers and environment expanded from the
        # gateway's own), and no gateway checks or audits their calls: admins' runs only.
        extra = file_specs(config.mcp_config_paths(settings), settings.environ)
        specs += [spec for spec in extra if agent.uses_server(spec.name)]
    return Discovered(specs, left_out)


def _why_not(record: ServerRecord, run_as: RunAs) -> str | None:
    """Why ``run_as`` could not call this server, as the gateway would decide it."""
    if not record.enabled:
        return "disabled"
    try:
        policy = parse_server_config(record.config).oauth
    except ValidationError:  # as the gateway does (gateway.directory): it routes it not either
        return "its stored configuration is not valid; see `atrium plugins mcp validate`"
    if policy.client_id is not None and policy.client_id != AGENT_CLIENT_ID:
        return f"it accepts the client '{policy.client_id}' only"
    if policy.dpop == "required":
        return "it requires DPoP-bound tokens"
    scopes = run_as.scopes
    if policy.scopes and ADMIN not in scopes and not scopes & set(policy.scopes):
        return f"it needs one of the scopes {' '.join(policy.scopes)}"
    return None


def auth_for(settings: Settings, run_as: RunAs, vet: Vet) -> AuthFor:
    """The ``McpManager`` hook: registry servers get the run's tokens, others their own."""

    def auth(spec: ServerSpec) -> httpx2.Auth | None:
        return RunAuth(settings, run_as, spec.name, vet) if spec.registry else None

    return auth
