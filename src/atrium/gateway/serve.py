"""Serving the gateway with uvicorn inside a process that owns its own signal handling.

``atrium start`` runs the gateway and the supervisor in one event loop; the supervisor's
handlers decide when to stop, so uvicorn must not install its own (it would swallow Ctrl-C
for itself and re-raise it after its own shutdown).

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only from the reverse proxies the
operator lists in ``gateway.trusted_proxies``. uvicorn's default trusts them from loopback,
where any local process can send them and so pick the address that the sign-in throttle, the
registration limit and the anonymous rate limits count against.

Slow clients meet the ``gateway.*_timeout_s`` deadlines (``atrium.serving.PacedProtocol``). On
stop, open-ended streams end at once and calls get ``gateway.shutdown_grace_s`` to finish;
those still running then get a JSON-RPC error (``gateway.inflight``), before uvicorn's own,
longer grace period would cancel them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from typing import Any

from atrium.errors import AtriumError
from atrium.gateway.app import GatewayApp, Siblings, create_app
from atrium.serving import Deadlines, EmbeddedServer, listening_socket, uvicorn_config
from atrium.settings import Settings
from atrium.store import Store

logger = logging.getLogger(__name__)

# uvicorn's own grace period runs this much past ours: calls still running at the end of ours
# are answered by the gateway (``InFlight.cut_calls``), not cancelled by uvicorn first.
UVICORN_GRACE_MARGIN_S = 2


def forwarding(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` options for the forwarded headers: read only from trusted proxies."""
    trusted = list(settings.trusted_proxies)
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted}


def deadlines(settings: Settings) -> Deadlines:
    """How long a client may take to send a request (``gateway.*_timeout_s``)."""
    return Deadlines(
        header_s=settings.header_timeout_s,
        body_s=settings.body_timeout_s,
        keep_alive_s=settings.keep_alive_timeout_s,
    )


class GatewayServer:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        listener: socket.socket | None = None,
        siblings: Siblings | None = None,
    ) -> None:
        """``listener``: a socket already listening, shared with ``siblings`` (a worker of
        ``gateway.workers``); else it listens on the settings' address itself."""
        self.settings = settings
        self._listener = listener
        self._app = create_app(settings, store=store, poll_s=settings.poll_s, siblings=siblings)
        config = uvicorn_config(
            self._app,
            host=settings.gateway_host,
            port=settings.gateway_port,
            timeout_s=math.ceil(settings.shutdown_grace_s) + UVICORN_GRACE_MARGIN_S,
            deadlines=deadlines(settings),
            **forwarding(settings),
        )
        self._server = EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def app(self) -> GatewayApp:
        return self._app

    async def start(self, deadline_s: float = 30.0) -> None:
        """Serve in the background; return once listening.

        The port is bound before the lifespan runs (a second or more on a busy machine), so
        nothing can take it meanwhile; connections made then wait in the backlog."""
        if self._listener is None:
            self._listener = listening_socket(
                self.settings.gateway_port, "the gateway", host=self.settings.gateway_host
            )
        self._task = asyncio.create_task(self._serve(self._listener), name="gateway")
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

    async def _serve(self, listener: socket.socket) -> None:
        try:
            await self._server.serve([listener])
        except SystemExit as exc:
            # uvicorn's answer to a lifespan that failed (it logged why): raised out of a task,
            # SystemExit would end the event loop, and every process sharing it, at once.
            listener.close()
            raise AtriumError(
                f"the gateway could not start (uvicorn exit code {exc.code}); the log says why"
            ) from None

    async def stop(self) -> None:
        """Stop accepting and end open-ended streams; give calls in flight
        ``gateway.shutdown_grace_s`` to finish, then answer each that has not with a JSON-RPC
        error (``gateway.inflight``); run the lifespan's end."""
        if self._task is None:
            return
        await self._drain()
        proxy = self._app.parts.proxy
        proxy.close_streams()
        self._server.should_exit = True
        done, _ = await asyncio.wait({self._task}, timeout=self.settings.shutdown_grace_s)
        if not done:
            proxy.inflight.cut_calls()
        await self._task

    async def _drain(self) -> None:
        """``gateway.drain_s``: say "draining" on /health and go on serving that long, for a
        load balancer to stop sending calls here. Closing the port at once would cut the
        calls it sent meanwhile, which it must not resend: they may have reached a backend."""
        if self.settings.drain_s <= 0 or self._task is None or self._task.done():
            return
        self._app.draining = True
        logger.info("draining for %.1f s before stopping", self.settings.drain_s)
        await asyncio.wait({self._task}, timeout=self.settings.drain_s)

    async def reload_auth(self) -> None:
        """Apply a revocation or a key rotation now rather than at the next poll: ``atrium
        admin`` asks for it through the supervisor's control channel after its change."""
        if not self._server.started:
            return  # the lifespan loads both as it starts
        await self._app.parts.reload_auth()
