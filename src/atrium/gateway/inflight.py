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
        lost: asyncio.Future[None] | None = None,
    ) -> None:
        """Run ``work`` (the answer) until it ends, the client goes away, or the gateway stops
        it. Raises what ``work`` raised before sending anything (a ``GatewayError``).

        ``work`` runs in the request's own task, which is cancelled when the client goes or
        the gateway stops it: no task of its own, and no wait on a set of them (issue 17).
        ``lost`` is the connection's end as the server knows it (``serving.CONNECTION_LOST``);
        without it a task reads ``receive`` until it says the client disconnected."""
        task = asyncio.current_task()
        assert task is not None
        watch = _Watch(task, self._stopped(open_ended), lost, receive)
        try:
            await work
        except asyncio.CancelledError:
            if watch.why is None or task.cancelling() > 1:
                # The server cancelled the request: its grace period is over. Answer at once.
                watch.why = "cancelled"
        except GatewayError:
            if watch.why is None:
                raise
        finally:
            watch.end()
        if watch.why is None:
            return
        while task.uncancel():  # ours, and the server's: the request goes on to answer
            pass
        # Cancelling the work closed the upstream connection, which the backend sees as the
        # request being cancelled.
        if watch.why == "gone":
            exchange.client_gone()
        else:
            await stopped(send, exchange, open_ended=open_ended)


class _Watch:
    """Interrupts a request's task, once, for the first of: its client gone (``lost`` done, or
    ``receive`` saying so), the gateway stopping its kind of answer (``stop``); only until
    ``end``, since its callbacks may already be scheduled when the work ends."""

    __slots__ = ("_lost", "_reader", "_stop", "task", "watching", "why")

    def __init__(
        self,
        task: asyncio.Task[Any],
        stop: asyncio.Future[None],
        lost: asyncio.Future[None] | None,
        receive: Receive,
    ) -> None:
        self.task = task
        self.watching = True
        self.why: str | None = None
        self._stop = stop
        self._lost = lost
        self._reader: asyncio.Future[None] | None = None
        stop.add_done_callback(self.stopped)
        if lost is not None:
            lost.add_done_callback(self.gone)
        else:
            self._reader = asyncio.ensure_future(_disconnected(receive))
            self._reader.add_done_callback(self.gone)

    def end(self) -> None:
        self.watching = False
        self._stop.remove_done_callback(self.stopped)
        if self._reader is not None:
            self._reader.remove_done_callback(self.gone)
            self._reader.cancel()
        elif self._lost is not None:
            self._lost.remove_done_callback(self.gone)

    def stopped(self, _: asyncio.Future[None]) -> None:
        self._interrupt("stopped")

    def gone(self, reader: asyncio.Future[None]) -> None:
        if reader.cancelled():
            return
        reader.exception()  # retrieved: a receive that broke means the client is gone too
        self._interrupt("gone")

    def _interrupt(self, why: str) -> None:
        if self.watching and self.why is None:
            self.why = why
            self.task.cancel()


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


async def _disconnected(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
