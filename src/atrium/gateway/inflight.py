"""Answers in flight: each runs until it ends, its client goes away, or the gateway stops.

When the gateway stops, open-ended streams (a GET stream, ``subscriptions/listen``) end at once:
clients of either era reconnect when a stream ends. Calls get the grace period
(``gateway.shutdown_grace_s``) to finish; whatever is left then (``InFlight.cut_calls``, or
the ASGI server cancelling the request's task at the end of its own grace period) is answered
with a JSON-RPC error that says the gateway is stopping (``errors.gateway_stopping``): a 503
when nothing was sent yet, an error event per unanswered request on a stream already open. The
exchange records the same, so the audit says what the client got.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.types import Message, Receive, Send

from atrium.gateway.errors import GatewayError, gateway_stopping
from atrium.gateway.exchange import Exchange
from atrium.gateway.sse import error_event

Answer = Callable[[Send, GatewayError, Exchange], Awaitable[None]]


class InFlight:
    def __init__(self) -> None:
        # Done when the gateway stops them: open-ended streams (True) or calls (False). One
        # future each, shared by every request: waiting costs no task of its own.
        self._stops: dict[bool, asyncio.Future[None]] = {}

    def close_streams(self) -> None:
        """End every open-ended stream: the gateway is stopping. Without this a server's
        shutdown waits its whole grace period for streams that never end by themselves."""
        self._stop(open_ended=True)

    def cut_calls(self) -> None:
        """Answer every call still running with a JSON-RPC error: the grace period is over."""
        self._stop(open_ended=False)

    def _stop(self, *, open_ended: bool) -> None:
        stop = self._stopped(open_ended)
        if not stop.done():
            stop.set_result(None)

    def _stopped(self, open_ended: bool) -> asyncio.Future[None]:
        stop = self._stops.get(open_ended)
        if stop is None:
            stop = self._stops[open_ended] = asyncio.get_running_loop().create_future()
        return stop

    async def run(
        self,
        receive: Receive,
        send: Send,
        work: Coroutine[Any, Any, None],
        exchange: Exchange,
        *,
        open_ended: bool,
    ) -> None:
        """Run ``work`` (the answer) until it ends, the client goes away, or the gateway stops
        it. Raises what ``work`` raised before sending anything (a ``GatewayError``)."""
        forward = asyncio.ensure_future(work)
        disconnect = asyncio.ensure_future(_disconnected(receive))
        stop = self._stopped(open_ended)
        cancelled = False
        try:
            await asyncio.wait({forward, disconnect, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            cancelled = uncancelled()
        stopping = cancelled or stop.done()
        disconnect.cancel()
        if forward.done():
            return forward.result()
        # Cancelling closes the upstream connection, which the backend sees as the request
        # being cancelled.
        forward.cancel()
        forward.add_done_callback(_consumed)
        if not stopping:
            exchange.client_gone()
        if not cancelled:  # once cancelled, the server is closing down: answer at once
            with contextlib.suppress(asyncio.CancelledError, GatewayError):
                await forward
        if stopping:
            await stopped(send, exchange, open_ended=open_ended)


async def stopped(send: Send, exchange: Exchange, *, open_ended: bool = False) -> None:
    """Answer what the gateway's stop cut off. Raises ``gateway_stopping()`` when nothing was
    sent yet; on a started event stream, sends an error event for each request of the body
    still unanswered (none for an ``open_ended`` stream: it simply ends), and the end."""
    if not exchange.started_response:
        raise gateway_stopping()
    if not exchange.streamed:
        return  # a JSON answer cut mid-body: nothing more can be said on it
    tail = b""
    inbound = exchange.inbound
    if inbound is not None and not open_ended:
        error = gateway_stopping()
        unanswered = [c.id for c in inbound.calls if c.is_request and c.id not in exchange.outcomes]
        tail = b"".join(error_event(error.body(request_id)) for request_id in unanswered)
        if unanswered:
            exchange.failure = ("jsonrpc_error", exchange.status, error.message)
    with contextlib.suppress(OSError):
        await send({"type": "http.response.body", "body": tail, "more_body": False})


async def answer_cancelled(send: Send, exchange: Exchange, answer: Answer) -> None:
    """The request's task was cancelled outside ``InFlight.run`` (reading the body, checking
    the caller): the server's grace period is over. ``answer`` sends a ``GatewayError``."""
    uncancelled()
    if not exchange.started_response:
        error = gateway_stopping()
        await answer(send, error, exchange)
        exchange.failed(error)


def uncancelled() -> bool:
    """Take back the cancellation of the current task, so the request can still answer; the
    server that cancelled it does not wait for it, and it ends right after."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return True


def _consumed(forward: asyncio.Future[None]) -> None:
    """Retrieve what a cancelled answer ended with: it is no one's to report any more."""
    if not forward.cancelled():
        forward.exception()


async def _disconnected(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
