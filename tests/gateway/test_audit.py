"""The audit trail: one record per JSON-RPC request, whatever its outcome, none ever lost."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from asyncio.subprocess import Process
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import orjson

from atrium.gateway.audit import MAX_ARGUMENT_BYTES, AuditSink
from atrium.settings import Settings
from atrium.store import Store
from atrium.store.audit import AuditEvent, AuditQueries
from tests.gateway import backend as backend_module
from tests.gateway.conftest import Backend
from tests.gateway.helpers import (
    ACCEPT,
    Gateway,
    call_modern,
    modern_headers,
    running_gateway,
    save_servers,
)
from tests.polling import until
from tests.processes import free_port


async def test_a_call_is_recorded_with_its_server_tool_arguments_caller_and_duration(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    before = datetime.now(UTC)
    response = await call_modern(http, gateway.url("tools"), "echo", {"text": "hello"})
    after = datetime.now(UTC)

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert (record.server, record.method, record.tool) == ("tools", "tools/call", "echo")
    assert record.arguments == {"text": "hello"}
    assert (record.caller, record.origin) == ("anonymous", "external")
    assert (record.outcome, record.status, record.error) == ("ok", 200, None)
    assert before <= record.at <= after
    assert 0 < record.duration_ms < (after - before).total_seconds() * 1000


async def test_secret_looking_arguments_are_redacted(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    arguments = {"username": "ann", "password": "hunter2", "api_key": "sk-123"}
    response = await call_modern(http, gateway.url("tools"), "login", arguments)

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert record.arguments == {"username": "ann", "password": "***", "api_key": "***"}
    assert response.json()["result"]["structuredContent"] == {"result": "welcome ann"}


async def test_whatever_a_secret_looking_key_holds_is_redacted(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    arguments = {"host": "db", "credentials": {"user": "ann", "pass": "s3"}, "token": 123456}
    response = await call_modern(http, gateway.url("tools"), "connect", arguments)

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert record.arguments == {"host": "db", "credentials": "***", "token": "***"}
    assert response.json()["result"]["structuredContent"] == {"result": "connected to db"}


async def test_arguments_over_8_kib_are_cut_and_marked_truncated(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    content = "x" * (2 * MAX_ARGUMENT_BYTES)
    response = await call_modern(http, gateway.url("tools"), "upload", {"content": content})

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert response.json()["result"]["structuredContent"] == {"result": len(content)}
    assert record.arguments["_truncated"] is True
    assert record.arguments["_bytes"] == len(orjson.dumps({"content": content}))
    assert len(orjson.dumps(record.arguments)) < MAX_ARGUMENT_BYTES + 100


async def test_a_tool_error_is_recorded_as_tool_error(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await call_modern(http, gateway.url("tools"), "fail")

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert response.json()["result"]["isError"] is True
    assert (record.tool, record.outcome, record.status) == ("fail", "tool_error", 200)
    assert "this tool always fails" in str(record.error)


async def test_a_refused_call_is_recorded_as_a_json_rpc_error(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await call_modern(http, gateway.url("guarded"), "delete_everything")

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert (record.server, record.tool) == ("guarded", "delete_everything")
    assert (record.outcome, record.status) == ("jsonrpc_error", 400)


async def test_a_json_rpc_error_from_the_backend_is_recorded_as_a_json_rpc_error(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    # 2026-07-28 requires params._meta; without it the backend answers -32602 itself.
    body = orjson.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {}})
    headers = modern_headers("tools/call")

    response = await http.post(gateway.url("tools"), content=body, headers=headers)

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert response.json()["error"]["code"] == -32602
    assert record.outcome == "jsonrpc_error"
    assert record.error


async def test_a_backend_that_is_down_is_recorded_as_an_http_error(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    response = await call_modern(http, gateway.url("down"), "echo", {"text": "anyone?"})

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert (record.server, record.tool, record.arguments) == ("down", "echo", {"text": "anyone?"})
    assert (record.outcome, record.status) == ("http_error", 503)


@asynccontextmanager
async def killable_backend(tmp_path: Path) -> AsyncIterator[tuple[Process, int]]:
    """The backend as its own process, so that it can die; its ``slow`` touches a marker."""
    port = free_port()
    marker = tmp_path / "slow-started"
    argv = [backend_module.__file__, "--port", str(port), "--marker", str(marker)]
    argv.append("--unauthenticated")  # the test speaks to it through a gateway of its own
    with (tmp_path / "killable.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        async with httpx2.AsyncClient() as http:
            await wait_until_healthy(http, process, f"http://127.0.0.1:{port}/health")
        yield process, port
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def wait_until_healthy(http: httpx2.AsyncClient, process: Process, url: str) -> None:
    async def healthy() -> bool:
        assert process.returncode is None, "the killable backend exited while starting"
        with suppress(httpx2.TransportError):
            return (await http.get(url)).status_code == 200
        return False

    # A cold interpreter under coverage on a busy machine: a deadline, not a wait.
    await until(healthy, what="the killable backend to be healthy", timeout_s=30, interval=0.02)


async def test_a_backend_killed_mid_call_is_recorded_as_an_http_error(
    gateway: Gateway, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    async with killable_backend(tmp_path) as (process, port):
        await gateway.add_server("fragile", port=port)
        call = asyncio.ensure_future(
            call_modern(http, gateway.url("fragile"), "slow", {"seconds": 30})
        )
        await until(lambda: (tmp_path / "slow-started").exists(), what="the call to start")
        process.kill()
        response = await call

    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert response.status_code == 502
    assert response.json()["error"]["code"] == -32603
    assert (record.server, record.tool) == ("fragile", "slow")
    assert (record.outcome, record.status) == ("http_error", 502)


class HeldWriter:
    """The store's audit queries, held shut until the test lets them write."""

    def __init__(self, real: AuditQueries) -> None:
        self.real = real
        self.open = asyncio.Event()

    async def add_many(self, events: Sequence[AuditEvent]) -> None:
        await self.open.wait()
        await self.real.add_many(events)

    async def stored_request_ids(self, request_ids: Collection[str]) -> set[str]:
        return await self.real.stored_request_ids(request_ids)


@asynccontextmanager
async def gateway_with_held_writer(
    settings: Settings, backend: Backend
) -> AsyncIterator[tuple[Gateway, HeldWriter]]:
    """A gateway whose store takes no audit record until the test opens ``HeldWriter.open``."""
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, free_port())
        held = HeldWriter(store.audit)
        store.audit = held  # type: ignore[assignment]  # what the gateway's lifespan attaches
        async with running_gateway(settings, store) as gateway:
            store.audit = held.real
            yield gateway, held


async def test_a_store_that_cannot_keep_up_never_holds_back_a_response(
    settings: Settings, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with gateway_with_held_writer(settings, backend) as (gateway, held):
        response = await call_modern(http, gateway.url("tools"), "echo", {"text": "now"})
        assert response.status_code == 200
        assert await gateway.store.audit.for_request(response.headers["x-request-id"]) == []

        held.open.set()
        (record,) = await gateway.audit(response.headers["x-request-id"])
    assert record.outcome == "ok"


async def test_every_record_is_written_before_a_graceful_shutdown_ends(
    settings: Settings, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with gateway_with_held_writer(settings, backend) as (gateway, held):
        sink = gateway.parts.audit
        close = sink.close

        async def close_and_let_the_store_write() -> None:
            held.open.set()  # every record is still queued when the shutdown begins
            await close()

        # Wraps the real close (no double): the test must see it begin before the store writes.
        sink.close = close_and_let_the_store_write  # type: ignore[method-assign]
        url = gateway.url("tools")
        calls = [call_modern(http, url, "echo", {"text": f"{n}"}) for n in range(40)]
        responses = await asyncio.gather(*calls)
        assert not held.open.is_set()

        await gateway.stop()

        records = await gateway.store.audit.list_recent(100, server="tools")
    assert sorted(r.request_id for r in records) == sorted(
        r.headers["x-request-id"] for r in responses
    )
    assert {r.outcome for r in records} == {"ok"}


class BrokenWriter:
    """A store that is down: it neither takes records nor answers which it holds."""

    def __init__(self) -> None:
        self.attempts = 0

    async def add_many(self, events: Sequence[AuditEvent]) -> None:
        self.attempts += 1
        raise ConnectionError("the database is gone")

    async def stored_request_ids(self, request_ids: Collection[str]) -> set[str]:
        self.attempts += 1
        raise ConnectionError("the database is gone")


async def test_records_the_store_will_not_take_by_shutdown_are_stored_at_the_next_start(
    settings: Settings, tmp_path: Path
) -> None:
    journal = tmp_path / "audit-journal"
    writer = BrokenWriter()
    sink = AuditSink(writer, journal, linger_s=0)
    await sink.start()
    for n in range(3):
        sink.record([AuditEvent(request_id=f"r{n}", server="tools", method="tools/call")])
    await sink.close()
    assert writer.attempts >= 3  # retried before leaving them to the journal
    assert list(journal.glob("*.jsonl"))

    async with await Store.open(settings) as store:
        after = AuditSink(store.audit, journal, linger_s=0)
        await after.start()
        await after.close()
        records = await store.audit.list_recent(10)

    assert sorted(record.request_id for record in records) == ["r0", "r1", "r2"]
    assert not list(journal.iterdir())


class GatedWriter:
    """A store that takes a batch only when the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.written: list[str] = []

    async def add_many(self, events: Sequence[AuditEvent]) -> None:
        await self.gate.wait()
        self.written += [event.request_id for event in events]

    async def stored_request_ids(self, request_ids: Collection[str]) -> set[str]:
        return set(request_ids) & set(self.written)


async def test_a_reader_can_wait_for_the_records_of_calls_just_answered(tmp_path: Path) -> None:
    writer = GatedWriter()
    sink = AuditSink(writer, tmp_path / "audit-journal", linger_s=0)
    await sink.start()
    assert await sink.settled(timeout_s=0.01)  # nothing recorded: settled at once

    sink.record([AuditEvent(request_id="r1", server="tools", method="tools/call")])
    assert not await sink.settled(timeout_s=0.05)  # the store has not taken it yet

    writer.gate.set()
    assert await sink.settled(timeout_s=2)
    assert writer.written == ["r1"]
    await sink.close()


async def test_records_on_postgresql_and_sqlite_alike(
    database_settings: Settings, backend: Backend, http: httpx2.AsyncClient
) -> None:
    async with await Store.open(database_settings) as store:
        await save_servers(store, backend.port, free_port())
        async with running_gateway(database_settings, store) as gateway:
            secret = {"username": "ann", "password": "hunter2", "api_key": "sk-1"}
            response = await call_modern(http, gateway.url("tools"), "login", secret)
            (record,) = await gateway.audit(response.headers["x-request-id"])

    assert record.arguments == {"username": "ann", "password": "***", "api_key": "***"}
    assert (record.server, record.tool, record.outcome) == ("tools", "login", "ok")
    assert record.duration_ms > 0


async def test_a_batch_refused_whole_is_one_record_of_its_first_request(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    batch = [
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "admin_reset"}},
    ]
    headers = {"Accept": ACCEPT, "Content-Type": "application/json"}

    response = await http.post(gateway.url("guarded"), json=batch, headers=headers)

    assert response.json()["error"]["code"] == -32602  # one refused call refuses the batch
    marker = await call_modern(http, gateway.url("guarded"), "echo", {"text": "after"})
    # Records are written in order: once the marker's is stored, so is every record before it.
    stored = await gateway.audit_of("guarded", 2)
    assert [r.request_id for r in stored] == [
        marker.headers["x-request-id"],
        response.headers["x-request-id"],
    ]
    (record,) = await gateway.audit(response.headers["x-request-id"])
    assert (record.tool, record.outcome, record.status) == ("echo", "jsonrpc_error", 400)
    assert "admin_reset" in str(record.error)  # the refused call, named by the refusal
