"""The registry at scale (issue 17): 1,000 servers and 20,000 tools, against three budgets.

    .venv/bin/python bench/registry_scale.py [--servers 1000] [--tools 20] [--repeat 20]

Fills a fresh SQLite store with the servers through the store's own API and the gateway's tool
catalog with 20 tools a server through ``ToolCatalog.learn``, the way the gateway learns them
from the ``tools/list`` answers passing through (the catalog lives in the gateway's memory,
not in the store). Then, with the gateway app in this process (its lifespan, as ``atrium
start`` runs it; requests through ``httpx.ASGITransport``), prints from one run:

* route lookup: the time of ``ServerDirectory.lookup`` with 10, 100 and 1,000 servers routed,
  and its ratio to the time with 10 (O(1): the ratio stays near 1);
* ``GET /api/v1/mcp/registry``: median and worst of ``--repeat``, and their ratio to 50 ms;
* a caller's filtered ``tools/list`` of a 100-tool server (half the tools ``readOnlyHint``; an
  anonymous caller of a server without sign-in sees those 50): the backend is a real process
  (this script, ``--serve-backend``), so this process's CPU time per call is the gateway's
  plus the in-process client's; the client's part is measured alone, against an ASGI app
  answering the same bytes, and subtracted. Printed with its ratio to 1 ms, next to, for
  comparison: the same list relayed whole (the backend again as a dev-mode server), a
  ``tools/call`` answered in a few bytes (what any proxied call costs), and the filter alone
  (``ToolAccess.filter_result`` on the parsed answer, written again).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import orjson
from starlette.types import Receive, Scope, Send

from atrium.auth.resource_guard import ANONYMOUS
from atrium.gateway.access import ToolAccess
from atrium.gateway.app import create_app
from atrium.gateway.directory import ServerDirectory, build_routes
from atrium.registry.schema import parse_server_config
from atrium.registry.sync import record_for
from atrium.settings import Settings, load_settings
from atrium.store import ServerRecord, Store

REGISTRY_BUDGET_MS = 50.0
LIST_BUDGET_MS = 1.0
LIST_TOOLS = 100
LIST_CALLS = 300
BACKEND = "hundred"
OPEN = "hundred-open"
PROTOCOL = "2026-07-28"
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": PROTOCOL,
    "Mcp-Method": "tools/list",
}


def serve_backend(port: int) -> None:
    """The 100-tool backend: even-numbered tools read-only, each with a small schema."""
    from atrium import AtriumServer, ToolAnnotations, run

    server: AtriumServer[Any] = AtriumServer(BACKEND, version="1.0.0")
    for index in range(LIST_TOOLS):

        def tool(text: str, count: int = 1) -> str:
            """Return ``text`` ``count`` times."""
            return text * count

        annotations = ToolAnnotations(read_only_hint=index % 2 == 0)
        server.tool(name=f"tool_{index:03d}", annotations=annotations)(tool)
    run(server, ["--port", str(port), "--unauthenticated"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def records(count: int, backend_port: int) -> list[ServerRecord]:
    """``count`` servers, the last two of them the real 100-tool backend."""
    made = [
        record_for(
            f"s{index:04d}", parse_server_config({"binary": "x", "port": 20000 + index}), None
        )
        for index in range(count - 2)
    ]
    config = parse_server_config(
        {"binary": "x", "port": backend_port, "oauth": {"required": False}}
    )
    # The same backend again in dev mode: every tool reaches a caller without a token, so the
    # gateway relays the listing untouched (``ToolAccess.open``).
    opened = parse_server_config({"binary": "x", "port": backend_port, "oauth": {"dev_mode": True}})
    return [*made, record_for(BACKEND, config, None), record_for(OPEN, opened, None)]


def listing(server: str, count: int) -> list[dict[str, Any]]:
    """A ``tools/list`` answer's tools, as a backend would list them."""
    return [
        {
            "name": f"{server}_tool_{index:02d}",
            "description": "A tool of the benchmark.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
            "annotations": {"readOnlyHint": index % 2 == 0},
        }
        for index in range(count)
    ]


def lookup_times(stored: list[ServerRecord], settings: Settings, store: Store) -> None:
    """``ServerDirectory.lookup`` per call, over every routed name in turn, at three sizes."""
    print(f"{'route lookup':32} {'servers':>8} {'per lookup':>11} {'/10 servers':>12}")
    base = None
    for size in (10, 100, 1000):
        directory = ServerDirectory(settings, store)
        directory.replace(build_routes(stored[:size], settings))
        names = list(directory.routes) * (100_000 // size)

        def resolve(directory: ServerDirectory = directory, names: list[str] = names) -> None:
            for name in names:
                directory.lookup(name)

        best = min(timeit.repeat(resolve, number=1, repeat=5)) / len(names) * 1e9
        base = base or best
        print(f"{'':32} {size:8} {best:9.0f}ns {best / base:12.2f}")


async def timed(call: Callable[[], Awaitable[httpx2.Response]], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = await call()
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return times


async def cpu_per_call(call: Callable[[], Awaitable[httpx2.Response]], calls: int) -> float:
    """This process's CPU time per call, in ms, over ``calls`` calls after a warm-up."""
    for _ in range(20):
        (await call()).raise_for_status()
    used = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - used) / calls * 1000


def list_body(method: str = "tools/list", **params: Any) -> bytes:
    meta = {
        "io.modelcontextprotocol/protocolVersion": PROTOCOL,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    return orjson.dumps(message)


async def small_call(http: httpx2.AsyncClient) -> float:
    """Gateway + client CPU per ``tools/call`` of a read-only tool of the 100-tool server,
    answered in a few bytes: what any proxied call costs; the median of three rounds."""
    path = f"/api/v1/mcp/{BACKEND}/mcp"
    body = list_body("tools/call", name="tool_000", arguments={"text": "x"})
    headers = HEADERS | {"Mcp-Method": "tools/call", "Mcp-Name": "tool_000"}

    async def call() -> httpx2.Response:
        return await http.post(path, content=body, headers=headers)

    answer = orjson.loads((await call()).content)
    if answer.get("result", {}).get("content") != [{"type": "text", "text": "x"}]:
        raise SystemExit(f"tools/call: {answer}")
    return statistics.median([await cpu_per_call(call, LIST_CALLS) for _ in range(3)])


async def client_floor(answer: bytes, calls: int) -> float:
    """The in-process client's CPU per call: the same POST, answered with the same bytes by an
    ASGI app that does nothing else."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://bench") as http:
        body = list_body()
        return await cpu_per_call(lambda: http.post("/mcp", content=body, headers=HEADERS), calls)


async def tools_list(http: httpx2.AsyncClient, server: str, expected: int) -> float:
    """Gateway + client CPU per call of a caller without a token listing the tools of
    ``server``, the median of three rounds; checks the answer holds ``expected`` tools."""
    path, body = f"/api/v1/mcp/{server}/mcp", list_body()

    async def call() -> httpx2.Response:
        return await http.post(path, content=body, headers=HEADERS)

    tools = orjson.loads((await call()).content)["result"]["tools"]
    if len(tools) != expected:
        raise SystemExit(f"tools/list of {server}: {len(tools)} tools, expected {expected}")
    return statistics.median([await cpu_per_call(call, LIST_CALLS) for _ in range(3)])


def filter_alone(app: Any, answer: bytes) -> tuple[float, float]:
    """The CPU of the exchange's part in ms: the answer parsed, filtered and written again
    (``ToolAccess.filter_result``) for a caller without a token, and parsed alone."""
    route = app.parts.directory.lookup(BACKEND)
    access = ToolAccess(BACKEND, route.config, route.policy, ANONYMOUS, app.parts.proxy.catalog)

    def narrowed() -> bytes:
        message = orjson.loads(answer)
        access.filter_result(message)
        return orjson.dumps(message)

    calls = 1000
    filtered = min(timeit.repeat(narrowed, number=calls, repeat=3)) / calls * 1000
    parsed = min(timeit.repeat(lambda: orjson.loads(answer), number=calls, repeat=3)) / calls
    return filtered, parsed * 1000


async def run(count: int, per_server: int, repeat: int, backend_port: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "atrium.yaml").write_text("gateway:\n  port: 18080\n")
        settings = load_settings(project, environ={})
        async with await Store.open(settings) as store:
            stored = records(count, backend_port)
            started = time.perf_counter()
            await store.servers.save(stored)
            print(f"stored: {count} servers in {time.perf_counter() - started:.2f} s")
            lookup_times(stored, settings, store)
            app = create_app(settings, store=store, poll_s=3600)
            async with app.router.lifespan_context(app):
                catalog = app.parts.proxy.catalog
                started = time.perf_counter()
                for record in stored:
                    catalog.learn(record.name, listing(record.name, per_server))
                took = time.perf_counter() - started
                print(f"learnt: {count * per_server} tools in {took:.2f} s")
                transport = httpx2.ASGITransport(app=app)
                async with httpx2.AsyncClient(
                    transport=transport, base_url=settings.public_url
                ) as http:
                    await measure(http, app, settings, repeat)


async def measure(http: httpx2.AsyncClient, app: Any, settings: Settings, repeat: int) -> None:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    registry = await http.get("/api/v1/mcp/registry")
    listed = len(registry.json()["servers"])
    times = await timed(lambda: http.get("/api/v1/mcp/registry"), repeat)
    median = statistics.median(times)
    print(
        f"GET /api/v1/mcp/registry ({listed} servers, {len(registry.content)} bytes):"
        f" median {median:.1f} ms, worst {max(times):.1f} ms;"
        f" /50 ms: {median / REGISTRY_BUDGET_MS:.2f} (worst {max(times) / REGISTRY_BUDGET_MS:.2f})"
    )
    filtered = await tools_list(http, BACKEND, LIST_TOOLS // 2)
    relayed = await tools_list(http, OPEN, LIST_TOOLS)
    answer = await http.post(f"/api/v1/mcp/{OPEN}/mcp", content=list_body(), headers=HEADERS)
    floor = await client_floor(answer.content, LIST_CALLS)
    gateway = filtered - floor
    print(
        f"tools/list of {LIST_TOOLS} tools ({len(answer.content)} bytes), CPU per call of this"
        f" process, median of 3 x {LIST_CALLS}: filtered to {LIST_TOOLS // 2} {filtered:.3f} ms,"
        f" relayed whole {relayed:.3f} ms, the client alone {floor:.3f} ms"
    )
    called = await small_call(http) - floor
    print(f"  gateway CPU of a tools/call answered in a few bytes, for comparison: {called:.3f} ms")
    narrowed, parsed = filter_alone(app, answer.content)
    print(
        f"  the filter alone: {narrowed:.3f} ms parsed, filtered and written"
        f" ({parsed:.3f} ms of it parsing)"
    )
    print(
        f"  gateway CPU of a filtered tools/list: {gateway:.3f} ms;"
        f" /1 ms: {gateway / LIST_BUDGET_MS:.2f}"
    )


def start_backend(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-backend", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return process
        if process.poll() is not None:
            raise SystemExit(f"the backend exited with {process.returncode}")
        time.sleep(0.05)
    process.terminate()
    raise SystemExit("the backend did not listen within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--tools", type=int, default=20, help="tools learnt per server")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--serve-backend", type=int, metavar="PORT", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve_backend is not None:
        serve_backend(arguments.serve_backend)
        return
    # The dev-mode server is this benchmark's own: its warning is for operators.
    logging.getLogger("atrium.gateway.directory").setLevel(logging.ERROR)
    port = free_port()
    backend = start_backend(port)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run(arguments.servers, arguments.tools, arguments.repeat, port))
    finally:
        backend.terminate()
        backend.wait(30)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
