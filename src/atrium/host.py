"""The composition root: assembling the product (store sync, supervisor, control channel and
gateway) for ``atrium start`` and ``atrium infra services``; ``--detach`` starts the same in a
background process (``atrium.cli.detach``).

The supervisor and the gateway never import each other; this module is where they meet.

The foreground process holds the project's supervisor lock, serves the control channel and
stops everything on SIGINT/SIGTERM (or a ``stop`` for all). A second ``start`` finds the lock
held and says so instead of starting twice. With the gateway, ``reload-auth`` on the channel
has it reload its revocation list and signing keys at once: ``atrium admin`` asks after a user
is disabled, a token revoked or the keys rotated, so the very next request sees the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from atrium.auth.caller_keystore import published_caller_keys
from atrium.gateway.workers import gateway_front
from atrium.registry.loader import Registry
from atrium.registry.sync import sync_to_store
from atrium.runstate import (
    STATE_FILE,
    AlreadyRunning,
    SupervisorLock,
    run_dir,
    running_supervisor,
)
from atrium.settings import Settings
from atrium.store import Store
from atrium.supervisor import control
from atrium.supervisor.supervisor import RestartPolicy, Supervisor, install_signal_handlers
from atrium.supervisor.zygote import Zygote

logger = logging.getLogger(__name__)


async def run_foreground(
    settings: Settings,
    registry: Registry,
    names: list[str] | None,
    *,
    reload: Callable[[], Registry],
    gateway: bool = False,
    policy: RestartPolicy | None = None,
    on_started: Callable[[dict[str, str | None]], None] | None = None,
    early_zygote: tuple[str, Zygote] | None = None,
) -> None:
    """Start ``names`` (or every enabled server), and the gateway, until told to stop.

    ``early_zygote``: a marker and the zygote started with it before this was imported
    (``atrium.supervisor.zygote.early_zygote``), handed to the supervisor, which closes it.

    With the gateway, the store is first brought in line with the YAML (``cloud sync`` to-db),
    so the gateway routes exactly the servers the supervisor runs; a restart does it again.
    """
    lock = SupervisorLock(settings.state_dir)
    if not lock.acquire():
        raise AlreadyRunning(running_supervisor(settings.state_dir) or -1)
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(lock.release)
        stack.callback((run_dir(settings.state_dir) / STATE_FILE).unlink, missing_ok=True)
        store = await Store.open(settings) if gateway else None
        if store is not None:
            stack.push_async_callback(store.close)
            await sync_to_store(store, registry)
        marker, zygote = early_zygote or (None, None)
        supervisor = Supervisor(
            settings,
            registry,
            policy,
            load_registry=_reloader(reload, store),
            marker=marker,
            zygote=zygote,
        )
        stack.push_async_callback(supervisor.close)
        # Before any server starts: the public caller keys it checks the gateway with, from
        # the store (a store of its own without a gateway), kept current while it runs.
        await stack.enter_async_context(published_caller_keys(settings, store))
        # One process, or gateway.workers of their own (refused here without Redis).
        front = gateway_front(settings, store) if store is not None else None
        reload_auth = front.reload_auth if front is not None else None
        server = await control.serve(settings.state_dir, _handler(supervisor, stop, reload_auth))
        stack.callback(server.close)
        install_signal_handlers(stop)
        # The servers start (each a process importing for a second or more) while the gateway
        # does: a start costs the longer of the two, not their sum.
        starting = asyncio.create_task(supervisor.start(names), name="servers-start")
        try:
            if front is not None:
                await front.start()
                stack.push_async_callback(
                    front.stop
                )  # stops first: no request meets a dead backend
        except BaseException:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            raise
        results = await starting
        supervisor.mark_ready()
        if on_started is not None:
            on_started(results)
        await stop.wait()
        logger.info("stopping")


async def run_gateway(
    settings: Settings, *, registry: Registry | None = None, on_started: Callable[[], None] | None
) -> None:
    """The gateway alone, until SIGINT or SIGTERM: one replica of many (``atrium gateway``).

    No supervisor, no project lock, no control channel: any number run side by side, on this
    host or others, sharing only the store (and Redis). It routes what the store holds; with
    ``registry`` it first brings the store in line with that YAML (``--sync``), which one
    place should do, not every replica.
    """
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        store = await Store.open(settings)
        stack.push_async_callback(store.close)
        if registry is not None:
            await sync_to_store(store, registry)
        front = gateway_front(settings, store)
        install_signal_handlers(stop)
        await front.start()
        stack.push_async_callback(front.stop)
        if on_started is not None:
            on_started()
        await stop.wait()
        logger.info("stopping")


def _reloader(
    reload: Callable[[], Registry], store: Store | None
) -> Callable[[], Awaitable[Registry]]:
    """Read the YAML again and, when a gateway routes from the store, sync it there too."""

    async def reload_and_sync() -> Registry:
        registry = reload()
        if store is not None:
            await sync_to_store(store, registry)
        return registry

    return reload_and_sync


def _handler(
    supervisor: Supervisor,
    stop: asyncio.Event,
    reload_auth: Callable[[], Awaitable[None]] | None = None,
) -> control.Handler:
    async def handle(message: dict[str, Any]) -> dict[str, Any]:
        op, names = message.get("op"), message.get("names")
        if op == "reload-auth":
            # Without a gateway here there is nothing to reload: not an error for the caller.
            if reload_auth is not None:
                await reload_auth()
            return {"ok": True, "gateway": reload_auth is not None}
        if names is not None and not (
            isinstance(names, list) and all(isinstance(n, str) for n in names)
        ):
            return {"ok": False, "error": "names must be a list of server names"}
        if op == "status":
            return {"ok": True, "state": supervisor.state.to_json()}
        if op in ("start", "restart"):
            return await _start_current(supervisor, names, restart=op == "restart")
        if op == "stop":
            if names is None:
                stop.set()
            else:
                await supervisor.stop(names)
            return {"ok": True}
        return {"ok": False, "error": f"unknown operation {op!r}"}

    return handle


async def _start_current(
    supervisor: Supervisor, names: list[str] | None, *, restart: bool
) -> dict[str, Any]:
    """``start``/``restart`` against the registry as it is now (the YAML, read and validated
    again; an invalid one is refused before anything changes): servers that left it stop,
    running ones whose configuration changed restart, new ones can start."""
    reloaded = await supervisor.reload()
    if restart:
        results = await supervisor.restart(names, also=reloaded.changed)
    else:
        restarted = await supervisor.restart([], also=reloaded.changed)
        results = restarted | await supervisor.start(names)
    return {"ok": True, "results": results, "stopped": list(reloaded.stopped)}
