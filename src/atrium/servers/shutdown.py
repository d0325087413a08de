"""Serving with uvicorn, and stopping so that the calls in flight still get their answers.

uvicorn alone gets this wrong for MCP in two ways:

* sse-starlette (the SDK's SSE responses) ends *every* event stream as soon as uvicorn starts
  to shut down, and in the ``initialize`` era a tool call's answer travels on such a stream:
  the client gets "SSE stream ended without a response". Yet the GET streams on which servers
  listen never end by themselves, so something must end them, or shutdown waits for its
  timeout. ``GracefulServer`` therefore turns sse-starlette's draining off, and its ``Drain``
  ends the GET streams once the calls (every other request) have answered, completing each
  HTTP response so that uvicorn has no half-sent response to complain about.
* uvicorn re-raises the SIGTERM it handled once it has stopped, so the process dies by the
  signal (exit -15) however cleanly it stopped. ``GracefulServer`` is therefore embedded
  (``atrium.serving``: uvicorn installs no handlers), and ``_signals_stop`` installs the ones
  that ask it to stop, so the process exits 0.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import uvicorn
from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atrium.serving import EmbeddedServer, uvicorn_config

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Drain:
    """ASGI middleware: counts the calls in flight, and ends the listening streams when asked.

    A listening stream is a GET answered with ``text/event-stream``; every non-GET request is
    a call.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._calls = 0
        self._idle: anyio.Event | None = None
        self._streams: set[anyio.CancelScope] = set()
        self._ending = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["method"] == "GET":
            await self._get(scope, receive, send)
        else:
            await self._call(scope, receive, send)

    async def end_streams_after_calls(self) -> None:
        """Wait until no call is in flight, then end every listening stream, now and later."""
        if self._calls:
            self._idle = anyio.Event()
            await self._idle.wait()
        self._ending = True
        for stream in list(self._streams):
            stream.cancel()

    async def _call(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._calls += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._calls -= 1
            if not self._calls and self._idle is not None:
                self._idle.set()

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = anyio.CancelScope()
        complete = False

        async def watched_send(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.start" and _is_event_stream(message):
                self._streams.add(stream)
                if self._ending:
                    stream.cancel()
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        with stream:
            try:
                await self.app(scope, receive, watched_send)
            finally:
                self._streams.discard(stream)
        if stream.cancel_called and not complete:
            # The end of a chunked body: the client sees the stream close, not a broken one.
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _is_event_stream(message: Message) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return bool(value.split(b";")[0].strip().lower() == b"text/event-stream")
    return False


class GracefulServer(EmbeddedServer):
    """``Drain(app)`` served as every ``atrium`` process serves (``atrium.serving``): on
    shutdown, calls first, then streams.

    uvicorn's own shutdown stops accepting connections and waits (up to ``timeout_s``) for the
    open ones; meanwhile the streams are ended as soon as the calls are done.
    """

    def __init__(
        self, app: ASGIApp, *, host: str, port: int, log_level: str, timeout_s: int
    ) -> None:
        # Streams are ended by Drain, after the calls; sse-starlette must not end them first.
        AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]  # unannotated
        self.drain = Drain(app)
        config = uvicorn_config(
            self.drain, timeout_s=timeout_s, host=host, port=port, log_level=log_level
        )
        super().__init__(config)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.drain.end_streams_after_calls)
            await super().shutdown(sockets)
            tasks.cancel_scope.cancel()


def serve_until_stopped(
    app: ASGIApp, *, host: str, port: int, log_level: str, timeout_s: int
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then return (and so exit 0) once it stopped."""
    server = GracefulServer(app, host=host, port=port, log_level=log_level, timeout_s=timeout_s)
    with _signals_stop(server):
        server.run()


@contextmanager
def _signals_stop(server: uvicorn.Server) -> Iterator[None]:
    """Stop ``server`` on SIGTERM and SIGINT while it serves; the previous handlers afterwards."""
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
