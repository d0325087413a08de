"""What the dashboard and a server's page show of each server: its configuration as the
gateway routes it, its process as the supervisor's state file tells (``atrium.runstate``, as
``atrium status`` reads it), and its last hour in the audit trail."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from atrium.gateway.directory import ServerRoute
from atrium.gateway.parts import GatewayParts
from atrium.runstate import RuntimeState, ServerStatus, read_state
from atrium.store.audit import UsageRow
from atrium.web.session import Viewer

WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class ServerRow:
    name: str
    description: str
    enabled: bool
    transport: str
    port: int | None
    state: str
    pid: int | None
    started_at: float | None
    restarts: int
    last_error: str | None
    calls: int
    errors: int
    p95_ms: float | None


def shown_routes(parts: GatewayParts) -> list[ServerRoute]:
    """The servers the console shows (``display_in_web: true``), by name."""
    routes = parts.directory.routes.values()
    return sorted((r for r in routes if r.config.display_in_web), key=lambda r: r.name)


async def server_rows(
    parts: GatewayParts, viewer: Viewer, routes: list[ServerRoute]
) -> list[ServerRow]:
    """One row per route; the calls counted are everyone's for an admin, else the viewer's."""
    runtime = read_state(parts.settings.state_dir)
    since = datetime.now(UTC) - WINDOW
    usage = {
        row.keys["server"]: row
        for row in await parts.store.audit.usage(since, "server", subject=viewer.audit_subject)
    }
    return [_row(route, runtime, usage.get(route.name)) for route in routes]


def _row(route: ServerRoute, runtime: RuntimeState | None, usage: UsageRow | None) -> ServerRow:
    status = runtime.servers.get(route.name) if runtime is not None else None
    config = route.config
    return ServerRow(
        name=route.name,
        description=config.description or "",
        enabled=route.enabled,
        transport=config.transport,
        port=status.port if status is not None else getattr(config, "port", None),
        state=_state(route, runtime, status),
        pid=status.pid if status is not None else None,
        started_at=status.started_at if status is not None and status.pid else None,
        restarts=status.restarts if status is not None else 0,
        last_error=status.last_error if status is not None else route.disabled_reason,
        calls=usage.requests if usage is not None else 0,
        errors=usage.errors if usage is not None else 0,
        p95_ms=usage.p95_ms if usage is not None else None,
    )


def _state(route: ServerRoute, runtime: RuntimeState | None, status: ServerStatus | None) -> str:
    if not route.enabled:
        return "disabled"
    if route.config.transport == "remote":
        return "remote"
    if runtime is None:
        return "unsupervised"  # no supervisor on this host: the servers run elsewhere
    return status.state if status is not None else "stopped"


def now() -> float:
    return time.time()
