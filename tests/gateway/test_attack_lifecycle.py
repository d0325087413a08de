"""Attacks on a request's lifecycle (issue 17's change: an answer runs in the request's own
task, cancelled when its connection ends, ``serving.CONNECTION_LOST``, or when the gateway
stops it, ``InFlight``): clients that pipeline, half-close, leave at any moment, or leave while
the gateway stops. Each request is answered or recorded once, the backend hears of every call
cut, and the gateway goes on serving with a clean upstream pool.

Raw HTTP/1.1 on loopback sockets to the gateway under uvicorn, as ``atrium start`` serves it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx2
import orjson
import pytest

from atrium.serving import PacedProtocol
from atrium.settings import Settings, load_settings
from atrium.store import Store
from atrium.store.audit import AuditRecord
from tests.gateway.attack_lifecycle_wire import (
    call,
    post,
    read_answer,
    read_to_end,
    tool_post,
)
from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    META,
    Gateway,
    call_modern,
    legacy_headers,
    legacy_session,
    running_gateway,
    save_servers,
)
from tests.gateway.test_shutdown_calls import (
    Stoppable,
    atrium_start_gateway,
    bare_uvicorn_gateway,
)
from tests.polling import until
from tests.processes import free_port

MAX_BODY = 1024 * 1024
BIG = 100_000  # a body past uvicorn's 64 KiB mark, where it pauses reading


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "atrium.yaml").write_text(f"gateway:\n  max_body_bytes: {MAX_BODY}\n")
    return load_settings(tmp_path, environ={})


def running(gateway: Gateway) -> int:
    """Requests the gateway is still answering (uvicorn's tasks)."""
    return len(gateway.served.server.server_state.tasks)


def queued(gateway: Gateway) -> int:
    """Requests read from the sockets, waiting behind an answer on their connection."""
    connections = gateway.served.server.server_state.connections
    return sum(len(c.pipeline) for c in connections if isinstance(c, PacedProtocol))


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What was logged at ERROR or above, or about tasks and coroutines left behind."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR
        or any(w in r.getMessage() for w in ("never retrieved", "never awaited", "destroyed"))
    ]


async def records_of(gateway: Gateway, count: int, server: str = "tools") -> list[AuditRecord]:
    """Every record of ``server``, once ``count`` are stored: ones past it would be extra."""

    async def stored() -> list[AuditRecord] | None:
        found = await gateway.store.audit.list_recent(2 * count + 10, server=server)
        return found if len(found) >= count else None

    return await until(stored, what=f"{count} audit records", interval=0.02)


def tag_of(record: AuditRecord) -> str:
    arguments = record.arguments
    assert isinstance(arguments, dict)
    return str(arguments["tag"])


# 1. Pipelining


async def test_pipelined_requests_behind_a_call_in_flight_are_not_read_ahead_without_bound(
    gateway: Gateway, backend: Backend
) -> None:
    """uvicorn stops reading a connection once a request waits behind the one answered, so a
    client cannot pile requests (each with its body) into the gateway's memory. Requests
    written one at a time, each whole in its own segment, must not undo that."""
    port = gateway.served.port
    hold = call("progress", {"steps": 1, "gate": "hold"}, progress=1)
    _, writer = await connect(port)
    writer.write(post(port, hold, name="progress"))
    await until(lambda: backend.witness.calls["progress"], what="the first call to run")

    most = 0
    echo = tool_post(port, "echo", {"text": "x" * 4000}, id=2)
    for _ in range(200):
        writer.write(echo)  # asyncio sets TCP_NODELAY: one segment each
        await writer.drain()
        await asyncio.sleep(0.005)  # paced, so each is read on its own
        most = max(most, queued(gateway))
    backend.witness.gate("hold").set()
    writer.close()

    assert most <= 2, f"the gateway read {most} requests ahead of the one it answers"


async def test_pipelined_requests_after_a_big_body_are_each_answered_in_order_and_audited_once(
    gateway: Gateway, backend: Backend
) -> None:
    port = gateway.served.port
    first = tool_post(port, "slow", {"seconds": 0.3, "tag": "first-" + "x" * BIG}, id=1)
    second = tool_post(port, "echo", {"text": "second"}, id=2)
    third = tool_post(port, "upload", {"content": "third"}, id=3)
    reader, writer = await connect(port)
    writer.write(first + second + third)  # one write, one segment where it fits

    async with asyncio.timeout(10):
        answers = [await read_answer(reader) for _ in range(3)]
    writer.close()
    records = [await gateway.audit(a.request_id) for a in answers]
    again = [await gateway.store.audit.for_request(a.request_id) for a in answers]

    assert [a.status for a in answers] == [200, 200, 200]
    assert [a.json()["id"] for a in answers] == [1, 2, 3]
    assert [a.json()["result"]["content"][0]["text"] for a in answers] == [
        "slept 0.3 s",
        "second",
        "5",
    ]
    assert [[(r.tool, r.outcome) for r in rs] for rs in again] == [
        [("slow", "ok")],
        [("echo", "ok")],
        [("upload", "ok")],
    ]
    assert records == again
    assert backend.witness.cancelled == set()


async def test_a_client_that_leaves_during_the_first_of_pipelined_requests_cuts_it_alone(
    gateway: Gateway, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """The call in flight is cut and the backend told; the requests queued behind it never
    run; one record, and nothing logged as broken."""
    port = gateway.served.port
    first = tool_post(port, "slow", {"seconds": 30, "tag": "left-" + "x" * BIG}, id=1)
    queued_calls = tool_post(port, "echo", {"text": "never"}, id=2) * 2
    _, writer = await connect(port)
    writer.write(first + queued_calls)
    await until(lambda: any(t.startswith("left-") for t in backend.witness.started), what="run")

    writer.close()
    await until(lambda: backend.witness.cancelled, what="the backend to be told")
    (record,) = await records_of(gateway, 1)
    await until(lambda: running(gateway) == 0, what="the gateway's request tasks to end")

    assert (record.tool, record.status, record.outcome) == ("slow", 499, "http_error")
    assert backend.witness.calls["echo"] == 0
    assert problems(caplog) == []


# 2. Half-close


async def test_a_client_that_half_closes_after_its_request_is_taken_as_gone(
    gateway: Gateway, backend: Backend
) -> None:
    """RFC 9112 §9.6 lets a client close its sending side and still read; uvicorn closes the
    connection on end of file (``eof_received``), as it did before the answer ran in the
    request's task: the call is cut as the client's leaving, once, and the backend told."""
    port = gateway.served.port
    reader, writer = await connect(port)
    writer.write(tool_post(port, "slow", {"seconds": 30, "tag": "half"}))
    await until(lambda: "half" in backend.witness.started, what="the call to run")

    writer.write_eof()
    received = await asyncio.wait_for(read_to_end(reader), 10)
    writer.close()
    (record,) = await records_of(gateway, 1)
    await until(lambda: "half" in backend.witness.cancelled, what="the backend to be told")

    assert received == b""
    assert (record.status, record.outcome) == (499, "http_error")


# 3. Leaving at any moment


async def test_calls_cut_at_random_moments_are_each_recorded_once_and_the_gateway_serves_on(
    gateway: Gateway,
    backend: Backend,
    http: httpx2.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = gateway.served.port
    seconds = 0.05
    rng = random.Random(17)
    answered: dict[str, int] = {}
    batch = 10
    started = asyncio.get_running_loop().time()
    whole = await asyncio.gather(
        *(
            call_modern(http, gateway.url("tools"), "slow", {"seconds": seconds, "tag": "whole"})
            for _ in range(batch)
        )
    )
    took = asyncio.get_running_loop().time() - started  # what a batch of calls takes here, now
    assert [w.status_code for w in whole] == [200] * batch

    async def one(n: int) -> None:
        tag = f"cut-{n}"
        reader, writer = await connect(port)
        writer.write(tool_post(port, "slow", {"seconds": seconds, "tag": tag}))
        try:
            async with asyncio.timeout(rng.uniform(0, 1.5 * took)):
                answered[tag] = (await read_answer(reader)).status
        except TimeoutError:
            pass
        writer.close()

    calls = 200
    for start in range(0, calls, batch):
        await asyncio.gather(*(one(n) for n in range(start, start + batch)))
    records = [r for r in await records_of(gateway, calls + batch) if tag_of(r) != "whole"]
    await until(lambda: running(gateway) == 0, what="the gateway's request tasks to end")
    await until(lambda: backend.running() == 0, what="the backend's calls to end")
    after = [
        await call_modern(http, gateway.url("tools"), "echo", {"text": f"{n}"}) for n in range(5)
    ]

    tags = sorted(tag_of(r) for r in records)
    assert tags == sorted(f"cut-{n}" for n in range(calls))  # each exactly once
    for record in records:
        expected = answered.get(tag_of(record))
        assert (record.status, expected) in {(200, 200), (200, None), (499, None)}, record
    assert [r.json()["result"]["content"][0]["text"] for r in after] == [f"{n}" for n in range(5)]
    assert problems(caplog) == []


# 4. Keep-alive after a cut


async def test_a_call_cut_by_its_client_leaves_no_half_read_backend_connection_behind(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    port = gateway.served.port
    _, writer = await connect(port)
    writer.write(tool_post(port, "slow", {"seconds": 30, "tag": "gone"}))
    await until(lambda: "gone" in backend.witness.started, what="the call to run")
    (cut,) = [r for r in backend.witness.requests if b'"gone"' in r.body]
    writer.close()
    await until(lambda: "gone" in backend.witness.cancelled, what="the backend to be told")

    texts = [f"next-{n}" for n in range(20)]
    answers = await asyncio.gather(
        *(call_modern(http, gateway.url("tools"), "echo", {"text": t}) for t in texts)
    )

    assert [a.json()["result"]["content"][0]["text"] for a in answers] == texts
    later = backend.witness.requests[backend.witness.requests.index(cut) + 1 :]
    assert later
    assert all(r.peer != cut.peer for r in later if b"next-" in r.body)


# 5. Stopping while clients leave


@pytest.mark.parametrize("stopper", [atrium_start_gateway, bare_uvicorn_gateway])
async def test_stopping_while_clients_leave_answers_or_records_every_call_once(
    tmp_path: Path,
    backend: Backend,
    caplog: pytest.LogCaptureFixture,
    stopper: Callable[[Path, Backend], AbstractAsyncContextManager[Stoppable]],
) -> None:
    tags = [f"stop-{n}" for n in range(10)]
    async with stopper(tmp_path, backend) as gateway:
        port = int(gateway.base.rsplit(":", 1)[1])
        streams = [await connect(port) for _ in tags]
        for (_, writer), tag in zip(streams, tags, strict=True):
            writer.write(tool_post(port, "slow", {"seconds": 30, "tag": tag}))
        await until(lambda: set(tags) <= backend.witness.started, what="every call to run")

        stopping = asyncio.ensure_future(gateway.stop())
        for _, writer in streams[::2]:  # half the clients leave as the gateway stops
            writer.close()
        async with asyncio.timeout(10):
            answers = [await read_answer(reader) for reader, _ in streams[1::2]]
            await stopping
        for _, writer in streams[1::2]:
            writer.close()
        records = await gateway.store.audit.list_recent(100, server="tools")

    assert [a.status for a in answers] == [503] * 5
    assert [a.json()["error"]["code"] for a in answers] == [-32003] * 5
    by_tag = {tag_of(r): r.status for r in records}
    assert sorted(tag_of(r) for r in records) == sorted(tags)  # each once
    assert {by_tag[t] for t in tags[1::2]} == {503}
    assert {by_tag[t] for t in tags[::2]} <= {499, 503}
    await until(lambda: set(tags) <= backend.witness.cancelled, what="the backend to be told")
    # uvicorn's own word that its grace period ended, the bare server's way to stop
    assert [p for p in problems(caplog) if "graceful shutdown exceeded" not in p] == []


# 6. Streams whose client leaves


async def test_a_get_stream_whose_client_leaves_ends_on_the_backend_too(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    url = gateway.url("tools")
    session = await legacy_session(http, url)
    headers = {**legacy_headers(session), "Accept": "text/event-stream"}
    async with http.stream("GET", url, headers=headers) as stream:
        assert stream.status_code == 200
        assert backend.running() == 1  # the stream, and nothing else

    await until(lambda: running(gateway) == 0, what="the gateway's stream to end")
    await until(lambda: backend.running() == 0, what="the backend's stream to end")


async def test_a_listen_stream_whose_client_leaves_ends_on_the_backend_too(
    gateway: Gateway, backend: Backend
) -> None:
    port = gateway.served.port
    params = {"_meta": META, "notifications": {"toolsListChanged": True}}
    listen = orjson.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": params}
    )
    reader, writer = await connect(port)
    writer.write(post(port, listen, method="subscriptions/listen"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    await until(lambda: backend.running() == 1, what="the backend to hold the stream")

    writer.close()
    await until(lambda: running(gateway) == 0, what="the gateway's stream to end")
    await until(lambda: backend.running() == 0, what="the backend's stream to end")

    assert head.startswith(b"HTTP/1.1 200")


# 7. Bodies at the limit, and one abandoned


@pytest.mark.parametrize(("size", "status"), [(65535, 200), (65536, 200), (65537, 413)])
async def test_a_body_at_the_limit_is_taken_and_one_byte_past_it_refused(
    tmp_path: Path, backend: Backend, size: int, status: int
) -> None:
    (tmp_path / "atrium.yaml").write_text("gateway:\n  max_body_bytes: 65536\n")
    settings = load_settings(tmp_path, environ={})
    empty = len(call("upload", {"content": ""}))
    body = call("upload", {"content": "x" * (size - empty)})
    assert len(body) == size
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, free_port())
        async with running_gateway(settings, store) as gateway:
            port = gateway.served.port
            reader, writer = await connect(port)
            writer.write(post(port, body, name="upload"))
            answer = await asyncio.wait_for(read_answer(reader), 10)
            writer.close()
            (record,) = await gateway.audit(answer.request_id)

    assert answer.status == status
    assert record.status == status
    assert backend.witness.calls["upload"] == (1 if status == 200 else 0)


async def test_a_big_body_sent_slowly_then_abandoned_is_recorded_once_and_never_forwarded(
    gateway: Gateway, backend: Backend
) -> None:
    port = gateway.served.port
    body = call("upload", {"content": "x" * 500_000})
    request = post(port, body, name="upload")
    _, writer = await connect(port)
    for start in range(0, 300_000, 30_000):  # a slow trickle, well under the body deadline
        writer.write(request[start : start + 30_000])
        await writer.drain()
        await asyncio.sleep(0.02)
    writer.close()

    (record,) = await records_of(gateway, 1)
    await until(lambda: running(gateway) == 0, what="the gateway's request task to end")

    assert record.status in (400, 499)
    assert backend.witness.calls["upload"] == 0
