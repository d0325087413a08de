"""Serving HTTP from inside an ``atrium`` process: what the gateway, the toolkit servers and the
stdio bridge share, so none of them imports another to get it: the port check, uvicorn
embedded one way, and deadlines on reading a request (``PacedProtocol``)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from atrium.errors import AtriumError

INVALID_REQUEST = -32600  # JSON-RPC 2.0 §5.1
# How much longer than ``body_s`` the transport waits before it cuts a stalled body itself: a
# route that reads its body with that deadline (the MCP endpoint) answers, and audits, first.
BODY_BACKSTOP_MARGIN_S = 1.0
# A request's scope key: a future done when its connection is lost (``PacedProtocol``), so a
# request can be told its client went away without a task reading ``receive`` for it.
CONNECTION_LOST = "atrium.connection_lost"
# A request's scope key, set once its whole body has been read from the connection: reading it
# then waits for nothing, so it needs no deadline (``PacedProtocol``).
BODY_ARRIVED = "atrium.body_arrived"


class PortInUse(AtriumError):
    """Something else already listens on the port a server was to listen on."""


def ensure_port_free(port: int, what: str, host: str = "127.0.0.1") -> None:
    """Refuse to start ``what`` on a port something else listens on, naming both."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the server will: a port held only by TIME_WAIT connections is free to listen on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} is already in use; {what} cannot start") from None
            raise


def listening_socket(
    port: int, what: str, host: str = "127.0.0.1", backlog: int = 2048
) -> socket.socket:
    """A socket listening on ``host:port``, for processes that share it (``gateway.workers``):
    each child serves it with ``uvicorn.Server.serve(sockets=[...])``. The same refusal as
    ``ensure_port_free`` when the port is taken; the backlog is uvicorn's default."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} is already in use; {what} cannot start") from None
            raise
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside a process that owns SIGTERM and SIGINT: it installs no handlers of its own.

    uvicorn's own would catch them, stop serving, and re-raise them once stopped, so the process
    would die by its own signal (not exit 0), and could not stop what it runs (a supervisor, a
    child) after its HTTP server. Whoever serves sets ``should_exit`` (``handle_exit``) instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class Deadlines:
    """How long a client may take to send a request (issue 18 item 8). ``header_s``: the whole
    head, from the connection's start or the request's first byte (not from the last byte, so a
    trickle gains nothing); ``body_s``: the body without a byte; ``keep_alive_s``: an idle
    connection between requests. Never applied while an answer is being sent."""

    header_s: float = 10.0
    body_s: float = 30.0
    keep_alive_s: float = 5.0


class ServingConfig(uvicorn.Config):
    """``uvicorn.Config`` carrying the ``Deadlines`` that ``PacedProtocol`` reads."""

    def __init__(self, app: ASGIApp, *, deadlines: Deadlines, **options: Any) -> None:
        super().__init__(app, **options)
        self.deadlines = deadlines


def uvicorn_config(
    app: ASGIApp,
    *,
    timeout_s: int,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: Literal["on", "off"] = "on",
    deadlines: Deadlines | None = None,
    **options: Any,
) -> uvicorn.Config:
    """``app`` configured as every ``atrium`` process serves HTTP (under ``EmbeddedServer``);
    ``options`` go to ``uvicorn.Config`` (``log_level``, the forwarded-headers options).

    Logging is the CLI's, configured once. No access log: a request line carries its query
    string, and a redirect aimed at this port would leave an authorization code there (issue 19
    item 11); the gateway audits every request that reaches a server. No WebSocket: MCP is plain
    HTTP. Requests in flight get ``timeout_s`` to finish once the server stops. Slow clients
    meet ``deadlines`` (``PacedProtocol``).
    """
    return ServingConfig(
        app,
        deadlines=deadlines or Deadlines(),
        host=host,
        port=port,
        http=PacedProtocol,
        log_config=None,
        access_log=False,
        ws="none",
        lifespan=lifespan,
        timeout_graceful_shutdown=timeout_s,
        **options,
    )


class HeldHead:
    """One request's view of its connection's transport: its first write (the answer's status
    line and headers) is held until the next (the body's first bytes) and both go out in one
    ``send``, or until the end of this turn of the event loop (a stream's head, or an answer
    with no body yet). A JSON answer costs one system call instead of two (issue 17); bytes
    go out in the order they were written, and none later than this turn of the loop."""

    __slots__ = ("_held", "_loop", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif not self._started:
            self._started = True
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():  # else the client is gone: nobody to tell
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class PacedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with deadlines on reading a request (``Deadlines``).

    uvicorn bounds only the idle time after an answer: a connection that sends half a request
    line, or nothing at all, or a body a byte now and then, is held for ever, one socket and
    one parser each, until the process runs out of them. Here a head not complete in time is
    answered 408 (a JSON-RPC error, as everything the gateway answers itself) and closed, or
    closed silently when not one byte of it came; a stalled body is cut the same way after
    ``BODY_BACKSTOP_MARGIN_S`` more than ``body_s``, for routes that do not time their reads
    themselves. Once the app answers, no deadline applies: a long SSE stream is never cut.

    One timer per connection, checked when it fires: a request that arrives whole in one read
    (nearly all of them) costs a few clock readings, no timer.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.deadlines = config.deadlines if isinstance(config, ServingConfig) else Deadlines()
        # uvicorn annotates it int, but hands it to loop.call_later, which takes any seconds.
        self.timeout_keep_alive = self.deadlines.keep_alive_s  # type: ignore[assignment]
        self._body_limit = self.deadlines.body_s + BODY_BACKSTOP_MARGIN_S
        self._timer: asyncio.TimerHandle | None = None
        self._reading: Literal["head", "body"] | None = None  # what of a request is awaited
        self._since = 0.0  # the head's first byte (or the connection), or a body's last byte
        self._begun = False  # a byte of the head being read has come
        self._answering: RequestResponseCycle | None = None  # the request whose task runs

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._lost: asyncio.Future[None] = self.loop.create_future()
        self._expect("head")
        self._ensure_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        answering = self._answering
        if answering is not None and answering is not self.cycle:
            # uvicorn tells only the newest request (one pipelined behind this one, never to
            # run now): the one being answered must know its client left too, or it answers
            # 500 to nobody, logging that the app sent nothing.
            if not answering.response_complete:
                answering.disconnected = True
            answering.message_event.set()
        self._reading = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._reading is not None and not self.transport.is_closing():
            self._ensure_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._reading != "head":  # the next request on a kept-alive connection
            self._expect("head")
        self._begun = True

    def on_headers_complete(self) -> None:
        self._begun = False
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not before:  # not an upgrade: a request
            # Before the app's task takes its first step: it is only scheduled yet.
            self.cycle.transport = HeldHead(self.transport, self.loop)  # type: ignore[assignment]
            self.cycle.scope[CONNECTION_LOST] = self._lost  # type: ignore[literal-required]
        # A pipelined request waits, unread, for the one before it: the app times its body.
        self._reading = None if self.pipeline else "body"
        self._since = self.loop.time()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._since = self.loop.time()

    def on_message_complete(self) -> None:
        self._reading = None
        super().on_message_complete()
        if self.cycle is not None and not self.cycle.more_body:
            self.cycle.scope[BODY_ARRIVED] = True  # type: ignore[literal-required]
        if not self.pipeline:
            # A big body's last bytes may have paused reading until the app reads them; read
            # on, so the end of the connection is seen (CONNECTION_LOST) while the answer is
            # under way. Not past a request already waiting behind the one answered: reading
            # stays paused until that answer is complete (uvicorn), one request read ahead.
            self.flow.resume_reading()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._answering = cycle
        super()._start_asgi_task(cycle, app)

    def _expect(self, part: Literal["head", "body"]) -> None:
        self._reading = part
        self._since = self.loop.time()

    def _due(self) -> float:
        return self._since + (
            self.deadlines.header_s if self._reading == "head" else self._body_limit
        )

    def _ensure_timer(self) -> None:
        due = self._due()
        if self._timer is not None and self._timer.when() <= due + 0.001:
            return  # it fires in time, and looks again then
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(due, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._reading is None or self.transport.is_closing():
            return
        overdue = self.loop.time() >= self._due() - 0.001 and not self._waits_for_app()
        if not overdue:
            self._timer = self.loop.call_at(self._due(), self._check)
        elif self._reading == "head":
            self._head_overdue()
        else:
            self._body_overdue()

    def _waits_for_app(self) -> bool:
        """No byte comes because uvicorn stopped reading until the app reads what it has; or
        an answer is under way (a pipelined request's head): neither is the client's doing."""
        if self._reading == "body" and self.flow.read_paused:
            self._since = self.loop.time()
            return True
        answering = self.cycle is not None and self.cycle.response_started
        if self._reading == "head" and answering and not self.cycle.response_complete:
            self._since = self.loop.time()
            return True
        return False

    def _head_overdue(self) -> None:
        if self._begun:
            self._refuse(f"request headers not received within {self.deadlines.header_s:g} s")
        else:
            self.transport.close()  # not one byte: nothing to answer

    def _body_overdue(self) -> None:
        if not self.cycle.response_started:
            self.cycle.disconnected = True  # whatever the app still sends goes nowhere
            self._refuse(f"request body stalled: no byte for {self.deadlines.body_s:g} s")
        elif self.cycle.response_complete:
            self.transport.close()  # answered early (a 413): the rest of the body is unwanted
        else:
            self._since = self.loop.time()  # an answer is never cut
            self._timer = self.loop.call_at(self._due(), self._check)

    def _refuse(self, why: str) -> None:
        """408 with a JSON-RPC error, and close (RFC 9110 §15.5.9)."""
        error = {"code": INVALID_REQUEST, "message": why}
        body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": error})
        head = [STATUS_LINE[408]]
        for name, value in [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()
