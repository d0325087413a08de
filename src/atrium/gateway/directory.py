"""The servers the gateway routes to: read from the store, cached, refreshed on change.

The store is the registry every gateway replica shares (ARCHITECTURE.md, "Scaling out"); a
replica polls a cheap fingerprint (row count and newest ``updated_at``) and reloads only when
it moved, so a ``cloud sync`` reaches every replica within one poll interval.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pydantic import ValidationError

from atrium.errors import ConfigError
from atrium.gateway.errors import GatewayError, disabled, not_found, server_failed, unavailable
from atrium.gateway.policy import Policy
from atrium.registry.loader import ServerEntry
from atrium.registry.schema import RemoteServer, ServerConfig, parse_server_config
from atrium.registry.secrets import resolve_headers
from atrium.runstate import read_state
from atrium.settings import Settings
from atrium.store import ServerRecord, Store

logger = logging.getLogger(__name__)

# Logged once per registry load for each server that opts into it (atrium.gateway.access).
DEV_MODE_WARNING = (
    "server %s has oauth.dev_mode: true: callers WITHOUT A TOKEN may call every tool it"
    " allows (tools.public, when set, still narrows them). Local development only: never"
    " expose this gateway"
)


@dataclass(frozen=True)
class ServerRoute:
    name: str
    config: ServerConfig
    upstream: str
    policy: Policy
    disabled_reason: str | None
    credentials: Mapping[str, str] = field(default_factory=dict)  # a remote server's headers
    state_dir: Path | None = None  # where its supervisor keeps its runtime state (runstate)

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None

    def unreachable(self, why: str) -> GatewayError:
        """The answer when the backend cannot be connected to: 503 with ``Retry-After`` while
        it may come back by itself (restarting, backing off, or no supervisor here to ask);
        503 naming the command that brings it back when the supervisor gave up on it
        (``failed``) or an operator stopped it. Read only on this path: no cost per call."""
        state = read_state(self.state_dir) if self.state_dir is not None else None
        status = state.servers.get(self.name) if state is not None else None
        if status is None or state is None:
            return unavailable(self.name, why)
        if status.state == "failed":
            command = f"atrium infra services restart {self.name}"
            return server_failed(self.name, command, status.last_error)
        if status.state == "stopped" and state.ready:
            command = f"atrium infra services start {self.name}"
            return server_failed(self.name, command, "stopped")
        return unavailable(self.name, why)

    @property
    def gets_identity(self) -> bool:
        """Whether requests to this server carry the caller assertion: every server Atrium
        runs, and a remote one only when its YAML says ``forward_identity: true``."""
        return self.config.transport != "remote" or self.config.forward_identity


def build_routes(records: Iterable[ServerRecord], settings: Settings) -> dict[str, ServerRoute]:
    routes = {}
    for record in records:
        try:
            config = parse_server_config(record.config)
        except ValidationError:
            logger.exception("stored server %s is invalid; not routed", record.name)
            continue
        if config.oauth.dev_mode:
            logger.warning(DEV_MODE_WARNING, record.name)
        reason = None
        if not config.enabled:
            reason = record.disabled_reason or "enabled: false in its configuration"
        credentials = _credentials(record, config, settings)
        if credentials is None:
            reason = reason or "its upstream credentials cannot be resolved (see the gateway log)"
            credentials = {}
        upstream = _upstream(config, settings)
        policy = Policy.of(config.tools)
        # The supervisor's state tells of the servers it runs here: not remote ones, nor those
        # on another host (``backend:``).
        here = not isinstance(config, RemoteServer) and config.backend is None
        routes[record.name] = ServerRoute(
            record.name,
            config,
            upstream,
            policy,
            reason,
            credentials,
            settings.state_dir if here else None,
        )
    return routes


def _credentials(
    record: ServerRecord, config: ServerConfig, settings: Settings
) -> dict[str, str] | None:
    """A remote server's ``headers:`` resolved once, when the registry is loaded."""
    if not isinstance(config, RemoteServer) or not config.headers:
        return {}
    try:
        return resolve_headers(
            ServerEntry(record.name, config, record.source or "(store)"), settings
        )
    except ConfigError as exc:
        logger.error("server %s: %s", record.name, exc)
        return None


def _upstream(config: ServerConfig, settings: Settings) -> str:
    if config.transport == "remote":
        assert config.url is not None  # the schema requires it
        return config.url
    # A server on another host says where (``backend:``); the rest share gateway.backend_host.
    backend = config.backend
    host = backend.host if backend is not None else settings.backend_host
    port = (backend.port if backend is not None else None) or config.port
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/mcp"


class ServerDirectory:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._routes: Mapping[str, ServerRoute] = MappingProxyType({})
        self._fingerprint: tuple[int, object] | None = None  # (count, newest updated_at)

    @property
    def routes(self) -> Mapping[str, ServerRoute]:
        return self._routes

    def replace(self, routes: dict[str, ServerRoute]) -> None:
        self._routes = MappingProxyType(routes)

    def lookup(self, name: str) -> ServerRoute:
        route = self._routes.get(name)
        if route is None:
            raise not_found(name, [n for n, r in self._routes.items() if r.config.display_in_web])
        if route.disabled_reason is not None:
            raise disabled(name, route.disabled_reason)
        return route

    async def refresh(self) -> bool:
        """Reload from the store if it changed; whether it did."""
        fingerprint = await self.store.servers.fingerprint()
        if fingerprint == self._fingerprint:
            return False
        self.replace(build_routes(await self.store.servers.list(), self.settings))
        self._fingerprint = fingerprint
        return True


__all__ = ["GatewayError", "ServerDirectory", "ServerRoute", "build_routes"]
