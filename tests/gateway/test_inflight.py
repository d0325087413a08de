"""``InFlight.run``: the answer runs in the request's own task, and is cut, once, by the first
of its client going and the gateway stopping it; the request's task comes out of it with no
cancellation left pending, whatever happened in which order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from starlette.types import Message

from atrium.gateway.errors import GatewayError
from atrium.gateway.exchange import Exchange
from atrium.gateway.inflight import InFlight

T = TypeVar("T")


def exchange() -> Exchange:
    return Exchange(request_id="r", server="s", started=time.perf_counter())


async def never_disconnects() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def discard(message: Message) -> None:
    pass


class Work:
    """An answer that runs until released, noting how it ended."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.ended: str | None = None

    async def __call__(self) -> None:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.ended = "cancelled"
            raise
        self.ended = "done"


async def in_task(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    task = asyncio.ensure_future(coroutine)
    await asyncio.sleep(0)
    return task


async def test_an_answer_that_ends_is_not_cut_and_leaves_no_cancellation() -> None:
    work, ex = Work(), exchange()
    lost = asyncio.get_running_loop().create_future()

    async def request() -> int:
        await InFlight().run(never_disconnects, discard, work(), ex, open_ended=False, lost=lost)
        current = asyncio.current_task()
        assert current is not None
        return current.cancelling()

    task = await in_task(request())
    await work.started.wait()
    work.release.set()

    assert await task == 0
    assert (work.ended, ex.failure) == ("done", None)


async def test_a_lost_connection_cuts_the_answer_and_the_request_goes_on() -> None:
    work, ex = Work(), exchange()
    lost = asyncio.get_running_loop().create_future()

    async def request() -> int:
        await InFlight().run(never_disconnects, discard, work(), ex, open_ended=False, lost=lost)
        await asyncio.sleep(0)  # no cancellation is left for the request's next await
        current = asyncio.current_task()
        assert current is not None
        return current.cancelling()  # nor counted: asyncio.timeout would misread it

    task = await in_task(request())
    await work.started.wait()
    lost.set_result(None)

    assert await task == 0
    assert work.ended == "cancelled"
    assert ex.failure == ("http_error", 499, "client disconnected")


async def test_without_the_servers_future_a_disconnect_read_from_receive_cuts_it() -> None:
    work, ex = Work(), exchange()
    gone = asyncio.Event()

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    task = await in_task(InFlight().run(receive, discard, work(), ex, open_ended=False))
    await work.started.wait()
    gone.set()
    await task

    assert (work.ended, ex.failure) == ("cancelled", ("http_error", 499, "client disconnected"))


async def test_a_connection_lost_as_the_answer_ends_leaves_the_answer_whole() -> None:
    """The answer's last step and the connection's end in one turn of the loop: the end's
    callback comes after the work ended, and must not cancel what the request does next."""
    work, ex = Work(), exchange()
    lost = asyncio.get_running_loop().create_future()

    async def request() -> int:
        await InFlight().run(never_disconnects, discard, work(), ex, open_ended=False, lost=lost)
        await asyncio.sleep(0)
        current = asyncio.current_task()
        assert current is not None
        return current.cancelling()

    task = await in_task(request())
    await work.started.wait()
    work.release.set()  # the task's step is scheduled first...
    lost.set_result(None)  # ...the callback after it

    assert await task == 0
    assert (work.ended, ex.failure) == ("done", None)


async def test_cut_calls_answers_a_call_not_yet_answered_with_gateway_stopping() -> None:
    inflight, work, ex = InFlight(), Work(), exchange()
    lost = asyncio.get_running_loop().create_future()

    task = await in_task(
        inflight.run(never_disconnects, discard, work(), ex, open_ended=False, lost=lost)
    )
    await work.started.wait()
    inflight.cut_calls()

    with pytest.raises(GatewayError) as raised:
        await task
    assert raised.value.status == 503
    assert work.ended == "cancelled"
    assert ex.failure is None  # the proxy records the error it sends


async def test_close_streams_ends_an_open_ended_answer_but_not_a_call() -> None:
    inflight = InFlight()
    stream, call = Work(), Work()
    lost = asyncio.get_running_loop().create_future()
    started = exchange()
    started.started_response = True  # a stream's head went out long ago
    streaming = await in_task(
        inflight.run(never_disconnects, discard, stream(), started, open_ended=True, lost=lost)
    )
    calling = await in_task(
        inflight.run(never_disconnects, discard, call(), exchange(), open_ended=False, lost=lost)
    )
    await stream.started.wait()
    await call.started.wait()

    inflight.close_streams()
    await streaming

    assert (stream.ended, call.ended) == ("cancelled", None)
    call.release.set()
    await calling
    assert call.ended == "done"


async def test_the_servers_own_cancellation_is_answered_at_once_as_stopping() -> None:
    work, ex = Work(), exchange()
    lost = asyncio.get_running_loop().create_future()

    task = await in_task(
        InFlight().run(never_disconnects, discard, work(), ex, open_ended=False, lost=lost)
    )
    await work.started.wait()
    task.cancel()  # uvicorn, at the end of its grace period

    with pytest.raises(GatewayError) as raised:
        await task
    assert raised.value.status == 503
    assert work.ended == "cancelled"


async def test_a_refusal_the_answer_raises_before_sending_reaches_the_caller() -> None:
    async def refused() -> None:
        raise GatewayError(502, -32603, "no")

    lost = asyncio.get_running_loop().create_future()
    with pytest.raises(GatewayError) as raised:
        await InFlight().run(
            never_disconnects, discard, refused(), exchange(), open_ended=False, lost=lost
        )
    assert raised.value.status == 502
