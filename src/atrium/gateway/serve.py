"""Serving the gateway with uvicorn inside a process that owns its own signal handling.

``atrium start`` runs the gateway and the supervisor in one event loop; the supervisor's
handlers decide when to stop, so uvicorn must not install its own (it would swallow Ctrl-C
for itself and re-raise it after its own shutdown).

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only from the reverse proxies the
operator lists in ``gateway.trusted_proxies``. uvicorn's default trusts them from loopback,
where any local process can send them and so pick the address that the sign-in throttle, the
registration limit and the anonymous rate limits count against.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from atrium.errors import AtriumError
from atrium.gateway.app import create_app
from atrium.serving import EmbeddedServer, ensure_port_free, uvicorn_config
from atrium.settings import Settings
from atrium.store import Store

logger = logging.getLogger(__name__)


def forwarding(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` options for the forwarded headers: read only from trusted proxies."""
    trusted = list(settings.trusted_proxies)
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted}


class GatewayServer:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self._app = create_app(settings, store=store)
        config = uvicorn_config(
            self._app,
            host=settings.gateway_host,
            port=settings.gateway_port,
            timeout_s=10,
            **forwarding(settings),
        )
        self._server = EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self, deadline_s: float = 30.0) -> None:
        """Serve in the background; return once listening."""
        ensure_port_free(self.settings.gateway_port, "the gateway", host=self.settings.gateway_host)
        self._task = asyncio.create_task(self._server.serve(), name="gateway")
        async with asyncio.timeout(deadline_s):
            while not self._server.started:
                if self._task.done():
                    await self._task  # raises what stopped it
                    raise AtriumError("the gateway stopped while starting; see the log")
                await asyncio.sleep(0.02)
        logger.info(
            "gateway listening on http://%s:%s",
            self.settings.gateway_host,
            self.settings.gateway_port,
        )

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (10 s at most), run the lifespan's end."""
        if self._task is None:
            return
        self._app.parts.proxy.close_streams()
        self._server.should_exit = True
        await self._task

    async def reload_auth(self) -> None:
        """Apply a revocation or a key rotation now rather than at the next poll: ``atrium
        admin`` asks for it through the supervisor's control channel after its change."""
        if not self._server.started:
            return  # the lifespan loads both as it starts
        await self._app.parts.reload_auth()
