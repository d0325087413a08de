"""One bridge's life: listen, start the child, initialize it, serve, stop everything in order.

Exit status: 0 after SIGTERM or SIGINT (the child stopped and reaped), 1 when the child exited,
crashed or closed its stdout by itself, or could not be started or initialized; the
supervisor restarts the bridge then. A termination signal wins over a child that died at the
same moment: the supervisor signals the bridge's whole process group, the child included.

Stopping, whatever the cause: ``/mcp`` answers 503 at once, the SDK session manager ends every
session (their streams close, in-flight requests are cancelled and the child is told so), the
upstream session closes, the child is stopped (``child.stop``), then the HTTP server stops.
"""

from __future__ import annotations

import logging
import signal
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import anyio
import mcp_types as types
import uvicorn
from mcp.client.session import ClientSession
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext
from pydantic import ValidationError

from atrium.__about__ import __version__
from atrium.auth.assertion import AssertionVerifier
from atrium.bridge.app import MCP_PATH, Readiness, create_app, transport_security
from atrium.bridge.child import ChildProcess, describe_exit, spawn_child
from atrium.bridge.notifications import Fanout
from atrium.bridge.proxy import build_proxy
from atrium.bridge.upstream import Upstream
from atrium.serving import EmbeddedServer, uvicorn_config

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
# Open requests get this long to finish once the HTTP server stops; SSE streams never would.
HTTP_SHUTDOWN_GRACE_S = 2
# After the child closed its stdout, how long to wait for its exit code before logging.
EXIT_CODE_WAIT_S = 2.0
CLIENT_INFO = types.Implementation(name="atrium-stdio-bridge", version=__version__)


@dataclass(frozen=True)
class BridgeOptions:
    name: str
    command: tuple[str, ...]
    port: int
    host: str = "127.0.0.1"
    init_timeout_s: float = 60.0
    # The gateway's public caller-assertion keys; None serves anyone (--unauthenticated).
    caller_keys: Path | None = None


class Lifetime:
    """Why and with what status the bridge stops; the first reason is the one logged."""

    def __init__(self) -> None:
        self.stopping = anyio.Event()
        self.signalled = False

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.signalled else EXIT_FAILURE

    def stop_by_signal(self, signum: int) -> None:
        self.signalled = True
        if not self.stopping.is_set():
            logger.info("%s received: stopping", signal.Signals(signum).name)
            self.stopping.set()

    def fail(self, reason: str) -> None:
        if not self.stopping.is_set():
            logger.error("%s: stopping", reason)
            self.stopping.set()


async def run_bridge(options: BridgeOptions) -> int:
    """Serve until a signal or the child's end; the process exit status."""
    try:
        family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
        listener = socket.create_server((options.host, options.port), family=family)
    except OSError as exc:
        logger.error("cannot listen on %s port %d: %s", options.host, options.port, exc)
        return EXIT_FAILURE
    readiness = Readiness(options.name)
    try:
        callers = _callers(options)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.error("cannot read the caller-assertion keys %s: %s", options.caller_keys, exc)
        return EXIT_FAILURE
    # Embedded: the bridge owns SIGTERM and SIGINT, and stops its child after the HTTP server.
    http = EmbeddedServer(
        uvicorn_config(
            create_app(readiness, callers), timeout_s=HTTP_SHUTDOWN_GRACE_S, lifespan="off"
        )
    )
    lifetime = Lifetime()
    http_stopped = anyio.Event()
    with listener:
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signals, lifetime)
            group.start_soon(_serve_http, http, listener, lifetime, http_stopped)
            try:
                await _host_child(options, readiness, lifetime)
            finally:
                http.should_exit = True
                with anyio.CancelScope(shield=True):
                    await http_stopped.wait()
                group.cancel_scope.cancel()
    logger.info("stopped")
    return lifetime.exit_code


def _callers(options: BridgeOptions) -> AssertionVerifier | None:
    if options.caller_keys is None:
        logger.warning("--unauthenticated: serving anyone who reaches port %d", options.port)
        return None
    return AssertionVerifier.load(options.caller_keys, options.name)


async def _stop_on_signals(lifetime: Lifetime) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            lifetime.stop_by_signal(signum)


async def _serve_http(
    http: uvicorn.Server, listener: socket.socket, lifetime: Lifetime, stopped: anyio.Event
) -> None:
    try:
        await http.serve(sockets=[listener])
    finally:
        stopped.set()
    lifetime.fail("the HTTP server stopped")


async def _host_child(options: BridgeOptions, readiness: Readiness, lifetime: Lifetime) -> None:
    """Run the child and serve it until ``lifetime`` says stop; the exit stack unwinds in order."""
    async with AsyncExitStack() as stack:
        try:
            child = await stack.enter_async_context(spawn_child(options.command))
        except OSError as exc:
            lifetime.fail(f"cannot start {options.command[0]}: {exc.strerror or exc}")
            return
        watcher = await stack.enter_async_context(anyio.create_task_group())
        watcher.start_soon(_fail_when_gone, child, lifetime)
        stack.callback(watcher.cancel_scope.cancel)

        dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
            child.read_stream, child.write_stream
        )
        upstream = Upstream(dispatcher)
        fanout = Fanout(upstream)
        session = await stack.enter_async_context(
            ClientSession(
                dispatcher=dispatcher,
                message_handler=fanout.on_child_message,
                client_info=CLIENT_INFO,
            )
        )
        initialized = await _initialize(session, lifetime, options.init_timeout_s)
        if initialized is None:
            return
        manager = StreamableHTTPSessionManager(
            app=build_proxy(initialized, upstream, fanout),
            security_settings=transport_security(options.host),
        )
        await stack.enter_async_context(manager.run())
        readiness.serve(StreamableHTTPASGIApp(manager), child.pid)
        info = initialized.server_info
        logger.info(
            "serving %s %s (protocol %s, child %d) on http://%s:%d%s",
            info.name,
            info.version,
            initialized.protocol_version,
            child.pid,
            options.host,
            options.port,
            MCP_PATH,
        )
        await lifetime.stopping.wait()
        readiness.stop()


async def _initialize(
    session: ClientSession, lifetime: Lifetime, timeout_s: float
) -> types.InitializeResult | None:
    """The child's ``initialize`` result, or ``None`` (and the bridge stopping) without one."""
    result: types.InitializeResult | None = None
    async with anyio.create_task_group() as group:

        async def give_up_when_stopping() -> None:
            await lifetime.stopping.wait()
            group.cancel_scope.cancel()

        group.start_soon(give_up_when_stopping)
        try:
            with anyio.fail_after(timeout_s):
                result = await session.initialize()
        except TimeoutError:
            lifetime.fail(f"the child did not answer initialize within {timeout_s:g} s")
        except MCPError as exc:
            lifetime.fail(f"the child refused initialize: {exc.message} (code {exc.code})")
        except (RuntimeError, ValidationError) as exc:
            lifetime.fail(f"the child answered initialize wrongly: {exc}")
        group.cancel_scope.cancel()
    return result


async def _fail_when_gone(child: ChildProcess, lifetime: Lifetime) -> None:
    await child.wait_gone()
    with anyio.move_on_after(EXIT_CODE_WAIT_S):
        await child.exited.wait()
    lifetime.fail(f"child {child.pid} {describe_exit(child.returncode)}")
