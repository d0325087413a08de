"""Gateway overhead: a proxied ``tools/call`` against the same call made directly, in one run.

    .venv/bin/python bench/gateway.py [--seconds 8] [--runs 3] [--concurrency 16 64]
    .venv/bin/python bench/gateway.py --runs 1 --seconds 3      # a quick look

Starts an echo backend on the ``mcp`` SDK (stateless, JSON answers, one uvicorn process) and
the gateway (``atrium start``: OAuth required on the server, a bearer token, audit on, SQLite
store) on loopback, then for each era (2026-07-28: stateless, no ``initialize``; the
``initialize`` era: each client runs the handshake first, and would carry the session id,
but the stateless backend names none) and each concurrency drives
closed-loop clients at the backend directly and through the gateway, alternating, ``--runs``
times for ``--seconds`` each. It prints the medians: requests per second of both paths, their
ratio, and the CPU per call of the gateway and of the backend during the proxied runs (utime +
stime from ``/proc/<pid>/stat`` over the measured window, divided by the calls served). The
machine's steal (``/proc/stat``) over the whole run is printed with the table: a noisy
neighbour shows up there, not in the ratios.

The load generator shares the machine's cores with both servers, as it would on a developer's
machine; the figures compare the two paths within one run, not absolute capacity.

The workers comparison (issue 17, ``gateway.workers``): the same backend behind ``atrium
gateway --workers 1`` and ``--workers 2`` (Redis, which more than one worker needs, at
``--redis-url``), 2026-07-28 era, each concurrency, alternating, ``--runs`` times: requests per
second of each and the gateway CPU per call summed over its processes (the parent and every
worker). Backend, clients and workers share the same cores.

The listing (issue 17, "Scale of the registry": a caller's filtered ``tools/list`` of a
100-tool server costs at most 1 ms of gateway CPU), at the first concurrency
(``--no-listing`` skips it). ``bench/registry_scale.py``'s 100-tool server (on Atrium's
toolkit) spends ~8 ms of CPU on each listing, so behind it the gateway idles most of the time,
and an idle process pays more CPU per request than a busy one (every socket event wakes the
loop on its own, the caches are cold, no audit batch is shared). So the listing is measured
twice: against a backend that answers that server's own listing, fetched once, in a few
microseconds (``--serve-canned``), so the gateway is as busy as in the table above, for a
``tools:read`` caller (narrowed to the 50 read-only tools) and a ``tools:write`` one (relayed
whole); and against the toolkit server itself, for ``tools:read``, next to a ``tools/call``
of the echo server paced to the same rate, which tells what any call costs at that rate.

The floor (``bench/floor_proxy.py``): the 2026-07-28 rows again through a bare relay in the
gateway's own HTTP stack (uvicorn on httptools and uvloop, the gateway's upstream client) that
does nothing of Atrium's (no token, no JSON-RPC checks, no policy, no audit): its CPU per call
is what Python and the sockets cost, and the gateway's figure minus it is Atrium's own work.

``--pin`` puts the gateway and the floor relay on a CPU of their own and everything else on the
others, so that a profile's samples are CPU time (py-spy counts a thread waiting for a core as
running; with ``--profile PATH.txt`` the run prints both to compare); the throughput ratios of
a pinned run are not the table of issue 17, whose processes share the cores.

``--profile PATH`` records a py-spy flame graph of the gateway during the first 2026-07-28 run
at the first concurrency (py-spy from the dev extras; it may need ptrace rights): an SVG, or
collapsed stacks when PATH ends in ``.txt``; and one of the floor relay's first run beside it,
``<name>-floor<suffix>``. ``bench/profile_parts.py`` splits two such ``.txt`` profiles into
the parts of a call. Profiles go under ``bench/profiles/`` (ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
LISTING = "hundred"  # the 100-tool server of the listing rows (bench/registry_scale.py's)
CANNED = "hundred-canned"  # the same listing, answered by ``--serve-canned``
LISTED_TOOLS, READ_ONLY_TOOLS = 100, 50
TICKS = os.sysconf("SC_CLK_TCK")
CPUS = sorted(os.sched_getaffinity(0))  # before ``pin`` narrows this process's


# ---------------------------------------------------------------- the backend (a subprocess)


def serve_backend(port: int) -> None:
    """The echo backend: one tool on the ``mcp`` SDK, stateless, answering JSON."""
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("echo")

    @server.tool()
    def echo(text: str) -> str:
        """Return ``text``."""
        return text

    app = server.streamable_http_app(stateless_http=True, json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def serve_canned(port: int, source: str) -> None:
    """A backend that answers every POST with the listing ``source`` gave once, under the
    request's own id: the 100-tool server's bytes at almost no cost of its own."""
    import urllib.request

    import orjson
    import uvicorn
    from floor_proxy import whole_body
    from starlette.types import Receive, Scope, Send

    ask = urllib.request.Request(
        source,
        data=call_body(1, MODERN, "tools/list"),
        headers=base_headers(MODERN, None, "tools/list"),
    )
    with urllib.request.urlopen(ask, timeout=30) as answer:
        result = orjson.dumps(orjson.loads(answer.read())["result"])
    head = [(b"content-type", b"application/json")]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = orjson.dumps(orjson.loads(await whole_body(receive))["id"])
        data = b'{"jsonrpc":"2.0","id":' + request_id + b',"result":' + result + b"}"
        length = [(b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": head + length})
        await send({"type": "http.response.body", "body": data})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


# ---------------------------------------------------------------- measuring processes


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (and its reaped children: none here), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def steal_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return values[7], sum(values[:8])


def listening_pid(port: int) -> int:
    """The process that listens on ``port`` on loopback: the gateway, wherever atrium runs it."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(parts[9])
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(fd_dir.parent.name)
        except OSError:
            continue
    raise RuntimeError(f"no process of ours listens on port {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_port(port: int, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not come up")


# ---------------------------------------------------------------- the clients


def call_body(request_id: int, era: str, method: str = "tools/call") -> bytes:
    params: dict[str, object] = (
        {"name": "echo", "arguments": {"text": "hello"}} if method == "tools/call" else {}
    )
    if era == MODERN:
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return json.dumps(message).encode()


def base_headers(era: str, token: str | None, method: str = "tools/call") -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    if era == MODERN:
        headers |= {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
        if method == "tools/call":
            headers["Mcp-Name"] = "echo"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def open_session(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
    """``initialize`` + ``notifications/initialized``; ``headers`` then carry the session."""
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
    async with http.post(url, data=json.dumps(init), headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: initialize answered HTTP {response.status}")
        session = response.headers.get("Mcp-Session-Id")
    headers["MCP-Protocol-Version"] = LEGACY
    if session:
        headers["Mcp-Session-Id"] = session
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(url, data=json.dumps(note), headers=headers) as response:
        await response.read()


async def drive(
    url: str,
    era: str,
    concurrency: int,
    seconds: float,
    token: str | None,
    method: str = "tools/call",
    rate: float | None = None,
) -> int:
    """Calls answered by ``concurrency`` closed-loop clients in ``seconds`` (after a warm-up).

    Each client has its own headers (and, in the initialize era, its own session). With
    ``rate``, the clients together send at most ``rate`` calls a second: each waits for its
    next turn, one every ``concurrency / rate`` seconds.
    """
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        client_headers = [base_headers(era, token, method) for _ in range(concurrency)]
        if era != MODERN:
            await asyncio.gather(*(open_session(http, url, h) for h in client_headers))
        counted = [0]

        async def client(headers: dict[str, str], deadline: float, count: bool) -> None:
            n = 0
            turn = time.perf_counter()
            while time.perf_counter() < deadline:
                if rate is not None:
                    turn += concurrency / rate
                    await asyncio.sleep(max(0.0, turn - time.perf_counter()))
                n += 1
                body = call_body(n, era, method)
                async with http.post(url, data=body, headers=headers) as response:
                    body = await response.read()
                    if response.status != 200 or b'"isError":true' in body:
                        raise RuntimeError(f"{url}: HTTP {response.status}: {body[:200]!r}")
                if count:
                    counted[0] += 1

        warmup = time.perf_counter() + 1.0
        await asyncio.gather(*(client(h, warmup, False) for h in client_headers))
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(client(h, deadline, True) for h in client_headers))
    return counted[0]


@dataclass
class Sample:
    rps: float
    gateway_ms: float  # gateway CPU per call (0 for a direct run)
    backend_ms: float


def measured(
    url: str,
    era: str,
    c: int,
    seconds: float,
    token: str | None,
    pids: tuple[tuple[int, ...], int],
    method: str = "tools/call",
    rate: float | None = None,
) -> Sample:
    """One run, with the CPU of the gateway (its processes summed) and the backend over
    exactly its measured window.

    The warm-up second is inside the window of the CPU counters but its calls are not counted,
    so the window is widened to the warm-up and the calls are scaled to it.
    """
    gateway, backend = pids
    cpu_before = sum(map(cpu_seconds, gateway)), cpu_seconds(backend)
    started = time.perf_counter()
    calls = asyncio.run(drive(url, era, c, seconds, token, method, rate))
    elapsed = time.perf_counter() - started
    rps = calls / seconds
    served = rps * elapsed  # calls served over the whole window, warm-up included
    g_cpu = sum(map(cpu_seconds, gateway)) - cpu_before[0]
    b_cpu = cpu_seconds(backend) - cpu_before[1]
    return Sample(rps, g_cpu / served * 1000, b_cpu / served * 1000)


# ---------------------------------------------------------------- setup


def start_backend(stack: ExitStack, log: IO[str]) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, __file__, "--serve-backend", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    stack.callback(stop, process)
    wait_port(port)
    return port, process


def write_project(project: Path, urls: dict[str, str]) -> None:
    """The project's servers: each name of ``urls`` a remote server behind OAuth."""
    (project / "services/mcp").mkdir(parents=True)
    server = {
        name: {"transport": "remote", "url": url, "oauth": {"required": True, "scopes": ["user"]}}
        for name, url in urls.items()
    }
    (project / "services/mcp/bench.yaml").write_text(json.dumps({"mcp_servers": server}))


def start_gateway(stack: ExitStack, project: Path, urls: dict[str, str], log: IO[str]) -> int:
    gateway_port = free_port()
    write_project(project, urls)
    env = {
        **os.environ,
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_GATEWAY_PORT": str(gateway_port),
        "ATRIUM_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [PYTHON, "-m", "atrium", "--project", str(project), "start"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack.callback(stop, process)
    wait_port(gateway_port)
    return gateway_port


def start_listing_backend(stack: ExitStack, log: IO[str]) -> tuple[int, subprocess.Popen[bytes]]:
    """``bench/registry_scale.py``'s backend: 100 tools, every other one read-only."""
    port = free_port()
    argv = [PYTHON, str(HERE / "registry_scale.py"), "--serve-backend", str(port)]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(stop, process)
    wait_port(port)
    return port, process


def start_canned(
    stack: ExitStack, source: str, log: IO[str]
) -> tuple[int, subprocess.Popen[bytes]]:
    """``--serve-canned``: the listing of ``source``, answered at almost no cost."""
    port = free_port()
    argv = [PYTHON, __file__, "--serve-canned", str(port), "--canned-source", source]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(stop, process)
    wait_port(port)
    return port, process


def start_floor(stack: ExitStack, backend_url: str, log: IO[str]) -> tuple[int, int]:
    """``bench/floor_proxy.py`` in front of the backend: its port and pid."""
    port = free_port()
    argv = [PYTHON, str(HERE / "floor_proxy.py"), "--port", str(port), "--backend", backend_url]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(stop, process)
    wait_port(port)
    return port, process.pid


def start_workers(
    stack: ExitStack, project: Path, workers: int, redis_url: str, log: IO[str]
) -> tuple[int, tuple[int, ...]]:
    """``atrium gateway --workers N`` on the project (routing what the store holds); its
    port, and its parent's and workers' pids."""
    port = free_port()
    env = {
        **os.environ,
        "ATRIUM_GATEWAY_PORT": str(port),
        "ATRIUM_REDIS_URL": redis_url,
        "ATRIUM_LOG_LEVEL": "warning",
    }
    argv = [PYTHON, "-m", "atrium", "--project", str(project), "gateway", "--workers", str(workers)]
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(stop, process)
    wait_port(port, deadline_s=120)
    deadline = time.monotonic() + 120
    # One worker is the parent itself; more are its children, which accept once they serve.
    while len(children := children_of(process.pid)) < (workers if workers > 1 else 0):
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"the gateway with {workers} workers did not start")
        time.sleep(0.1)
    wait_serving(port)
    return port, (process.pid, *children)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def wait_serving(port: int, deadline_s: float = 120) -> None:
    """Until ``/health`` answers: a pool listens before its workers accept."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as sock:
                sock.settimeout(2)
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the gateway on port {port} did not answer /health")


def redis_reachable(url: str) -> bool:
    host, _, port = url.split("://", 1)[1].split("/", 1)[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), 2):
            return True
    except (OSError, ValueError):
        return False


def token_for(
    project: Path, url: str, port: int, scopes: tuple[str, ...] = ("user", "tools:write")
) -> str:
    """A token for the server at ``url``, signed with the project's key as the gateway's are;
    ``user`` lets in, ``tools:write`` calls every tool, ``tools:read`` the read-only ones
    (``auth.roles``)."""
    from atrium.auth.access_tokens import TokenIssuer
    from atrium.auth.keystore import project_keys
    from atrium.settings import load_settings

    settings = load_settings(project, environ={"ATRIUM_GATEWAY_PORT": str(port)})
    issuer = TokenIssuer(project_keys(settings), settings.issuer, ttl_s=3600)
    token, _ = issuer.mint(subject="bench", client_id="bench", audience=[url], scopes=list(scopes))
    return token


# ---------------------------------------------------------------- the run


@dataclass
class Row:
    label: str
    direct: float
    through: float
    gateway_ms: float
    backend_ms: float


def median_row(label: str, direct: list[Sample], through: list[Sample]) -> Row:
    return Row(
        label,
        statistics.median(s.rps for s in direct),
        statistics.median(s.rps for s in through),
        statistics.median(s.gateway_ms for s in through),
        statistics.median(s.backend_ms for s in through),
    )


def floor(
    args: argparse.Namespace, direct: str, relay: str, pids: tuple[tuple[int, ...], int]
) -> list[Row]:
    """The 2026-07-28 rows again through ``bench/floor_proxy.py``: the same stack, no Atrium."""
    rows = []
    for c in args.concurrency:
        direct_runs, through_runs = [], []
        for run in range(args.runs):
            direct_runs.append(measured(direct, MODERN, c, args.seconds, None, pids))
            spy = None
            if args.profile and c == args.concurrency[0] and run == 0:
                spy = Profiled(pids[0][0], floor_profile(args.profile), args.seconds)
            through_runs.append(measured(relay, MODERN, c, args.seconds, None, pids))
            if spy is not None:
                spy.wait()
        rows.append(median_row(f"{MODERN}, {c}", direct_runs, through_runs))
        print(f"floor, {c}: done", file=sys.stderr)
    return rows


async def listed(url: str, token: str) -> int:
    """How many tools one ``tools/list`` through the gateway answers with."""
    async with aiohttp.ClientSession() as http:
        headers = base_headers(MODERN, token, "tools/list")
        async with http.post(url, data=call_body(1, MODERN, "tools/list"), headers=headers) as r:
            answer = json.loads(await r.read())
    return len(answer["result"]["tools"])


@dataclass
class Listing:
    """Where the listing rows come from: the gateway, its echo server and the two 100-tool
    backends (the toolkit's, and the canned answer of its listing)."""

    project: Path
    port: int
    echo: str  # the echo server through the gateway
    echo_backend: int
    toolkit: int  # pids of the backends
    canned: int


def listings(args: argparse.Namespace, where: Listing) -> list[Row]:
    """A caller's ``tools/list`` of the 100-tool server at the first concurrency (issue 17,
    "Scale of the registry"; the module's docstring): filtered to the 50 read-only tools for
    a ``tools:read`` token, relayed whole for a ``tools:write`` one. No direct run: only the
    gateway's CPU counts. Each ``Row`` reads: the label, the rate as ``direct`` and
    ``through``, the gateway's and the backend's CPU per call."""
    c = args.concurrency[0]
    gateway = (listening_pid(where.port),)
    rows = []
    cases = [
        (f"filtered to {READ_ONLY_TOOLS}", CANNED, ("user", "tools:read"), READ_ONLY_TOOLS),
        ("relayed whole", CANNED, ("user", "tools:write"), LISTED_TOOLS),
        (
            f"filtered to {READ_ONLY_TOOLS}, toolkit",
            LISTING,
            ("user", "tools:read"),
            READ_ONLY_TOOLS,
        ),
    ]
    for label, server, scopes, expected in cases:
        url = f"http://127.0.0.1:{where.port}/api/v1/mcp/{server}/mcp"
        backend = where.canned if server == CANNED else where.toolkit
        token = token_for(where.project, url, where.port, scopes)
        if (count := asyncio.run(listed(url, token))) != expected:
            raise RuntimeError(f"tools/list {label}: {count} tools, expected {expected}")
        runs = [
            measured(url, MODERN, c, args.seconds, token, (gateway, backend), "tools/list")
            for _ in range(args.runs)
        ]
        rows.append(median_row(label, runs, runs))
        print(f"tools/list {label}: done", file=sys.stderr)
    rate = rows[-1].through
    token = token_for(where.project, where.echo, where.port)
    pids = (gateway, where.echo_backend)
    runs = [
        measured(where.echo, MODERN, c, args.seconds, token, pids, rate=rate)
        for _ in range(args.runs)
    ]
    rows.append(median_row(f"tools/call at {rate:.0f}/s", runs, runs))
    print("tools/call at the toolkit's rate: done", file=sys.stderr)
    return rows


def print_listings(rows: list[Row], concurrency: int, runs: int) -> None:
    print(
        f"\na caller's tools/list of a {LISTED_TOOLS}-tool server, 2026-07-28, c={concurrency},"
        f" medians of {runs}; budget: 1 ms of gateway CPU"
    )
    print("| tools/list | backend | req/s | Atrium CPU per call | /1 ms | backend CPU per call |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        label, _, toolkit = r.label.partition(", ")
        backend = "toolkit" if toolkit else "canned"
        if label.startswith("tools/call"):
            label, backend = f"({label}: echo)", "mcp SDK"
        print(
            f"| {label} | {backend} | {r.through:.0f} | {r.gateway_ms:.2f} ms "
            f"| {r.gateway_ms:.2f} | {r.backend_ms:.2f} ms |"
        )


def floor_profile(path: Path) -> Path:
    """Where the floor relay's profile goes, beside the gateway's: ``<name>-floor<suffix>``."""
    return path.with_name(f"{path.stem}-floor{path.suffix}")


def print_floor(rows: list[Row], gateway: list[Row]) -> None:
    of_gateway = {r.label: r for r in gateway}
    print("\nthe floor: the same relay in the same HTTP stack, nothing of Atrium's")
    print("| era, concurrency | direct req/s | through the relay | ratio |", end="")
    print(" relay CPU per call | Atrium CPU per call | Atrium's own work |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        atrium = of_gateway.get(r.label)
        own = f"{atrium.gateway_ms - r.gateway_ms:.2f} ms" if atrium else "-"
        mine = f"{atrium.gateway_ms:.2f} ms" if atrium else "-"
        print(
            f"| {r.label} | {r.direct:.0f} | {r.through:.0f} | {r.through / r.direct:.2f} "
            f"| {r.gateway_ms:.2f} ms | {mine} | {own} |"
        )


def print_table(rows: list[Row], steal: float, runs: int, seconds: float) -> None:
    print(f"\nmedians of {runs} x {seconds:g} s; steal over the run {steal:.1f} %")
    print("| era, concurrency | direct req/s | through Atrium | ratio |", end="")
    print(" Atrium CPU per call | backend CPU per call |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.label} | {r.direct:.0f} | {r.through:.0f} | {r.through / r.direct:.2f} "
            f"| {r.gateway_ms:.2f} ms | {r.backend_ms:.2f} ms |"
        )


def compare_workers(
    stack: ExitStack, project: Path, args: argparse.Namespace, backend: int, log: IO[str]
) -> list[Row]:
    """1 worker against 2, the 2026-07-28 era, alternating (module docstring). Each ``Row``
    reads: one worker's req/s as ``direct``, two workers' as ``through``, their CPU per call."""
    gateways: dict[int, tuple[str, str, tuple[tuple[int, ...], int]]] = {}
    for workers in (1, 2):
        port, processes = start_workers(stack, project, workers, args.redis_url, log)
        url = f"http://127.0.0.1:{port}/api/v1/mcp/echo/mcp"
        gateways[workers] = url, token_for(project, url, port), (processes, backend)
    rows = []
    for c in args.concurrency:
        samples: dict[int, list[Sample]] = {1: [], 2: []}
        for _ in range(args.runs):
            for workers, (url, token, pids) in gateways.items():
                samples[workers].append(measured(url, MODERN, c, args.seconds, token, pids))
        one, two = samples[1], samples[2]
        rows.append(
            Row(
                f"{MODERN}, {c}",
                statistics.median(s.rps for s in one),
                statistics.median(s.rps for s in two),
                statistics.median(s.gateway_ms for s in one),
                statistics.median(s.gateway_ms for s in two),
            )
        )
        print(f"workers, {c}: done", file=sys.stderr)
    return rows


def print_workers(rows: list[Row], cpus: int, steal: float, args: argparse.Namespace) -> None:
    print(f"\nworkers: `atrium gateway --workers 1` against `--workers 2` on {cpus} CPUs;", end="")
    print(f" medians of {args.runs} x {args.seconds:g} s; steal over the run {steal:.1f} %")
    print("| era, concurrency | 1 worker req/s | 2 workers req/s | ratio |", end="")
    print(" CPU per call, 1 worker | CPU per call, 2 workers (summed) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.label} | {r.direct:.0f} | {r.through:.0f} | {r.through / r.direct:.2f} "
            f"| {r.gateway_ms:.2f} ms | {r.backend_ms:.2f} ms |"
        )


def cases(concurrencies: list[int], modern_only: bool = False) -> Iterator[tuple[str, str, int]]:
    eras = ((MODERN, MODERN),) if modern_only else ((MODERN, MODERN), (LEGACY, "initialize era"))
    for era, name in eras:
        for c in concurrencies:
            yield era, f"{name}, {c}", c


SAMPLE_HZ = int(os.environ.get("BENCH_SAMPLE_HZ", "200"))  # py-spy samples a second


class Profiled:
    """py-spy recording ``pid`` for ``seconds`` into ``path`` (an SVG flame graph, or collapsed
    stacks for a ``.txt``), and the process's CPU over the same time, to check the samples
    against: py-spy counts a thread that runs or waits for a CPU alike, so the two agree only
    where the process has a core to itself (``--pin``). Where ``perf`` is on the PATH, it
    records the same seconds beside it (``<name>.perf.data``, the ``cpu-clock`` event of every
    CPU: time on a CPU only, by process, thread and library; threads started later are in it
    too), and the pid in ``<name>.perf.pid`` (``bench/profile_parts.py`` reads both)."""

    def __init__(self, pid: int, path: Path, seconds: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        py_spy = Path(PYTHON).with_name("py-spy")
        command = [str(py_spy), "record", "-p", str(pid), "-o", str(path), "-d", str(int(seconds))]
        if path.suffix == ".txt":  # collapsed stacks, for reading self time with a script
            command += ["--format", "raw"]
        self._cpu = cpu_seconds(pid)
        self._process = subprocess.Popen([*command, "-r", str(SAMPLE_HZ), "--nonblocking"])
        self._perf = None
        if shutil.which("perf") is not None:
            data = path.with_suffix(".perf.data")
            path.with_suffix(".perf.pid").write_text(f"{pid}\n")
            perf = ["perf", "record", "-q", "-a", "-e", "cpu-clock", "-F", "999"]
            self._perf = subprocess.Popen(
                [*perf, "-o", str(data), "--", "sleep", str(int(seconds))],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        self._watch = threading.Thread(target=self._until_done, args=(pid,), daemon=True)
        self._watch.start()

    def _until_done(self, pid: int) -> None:
        self._process.wait()
        self._cpu = cpu_seconds(pid) - self._cpu

    def wait(self) -> None:
        self._watch.join(60)
        if self._perf is not None:
            self._perf.wait(60)
        if self.path.suffix != ".txt":
            return
        sampled = sum(
            int(line.rpartition(" ")[2])
            for line in self.path.read_text().splitlines()
            if line.rpartition(" ")[2].isdigit()
        )
        print(
            f"profile {self.path.name}: {sampled / SAMPLE_HZ:.2f} s of samples against"
            f" {self._cpu:.2f} s of CPU (equal only where the process has a core to itself)",
            file=sys.stderr,
        )


def pin(profiled: Iterable[int], others: Iterable[int]) -> None:
    """``--pin``: every thread of the ``profiled`` processes on the last CPU, the ``others``
    (and this process, the clients) on the rest; threads started later inherit it."""
    cpus = CPUS
    if len(cpus) < 2:
        raise SystemExit("--pin needs two CPUs at least")
    for pids, where in ((profiled, {cpus[-1]}), (others, set(cpus[:-1]))):
        for pid in pids:
            for thread in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setaffinity(int(thread.name), where)
    os.sched_setaffinity(0, set(cpus[:-1]))


def overhead(
    args: argparse.Namespace,
    direct: str,
    through: str,
    token: str,
    pids: tuple[tuple[int, ...], int],
) -> list[Row]:
    """The table of issue 17: each era and concurrency, direct and through the gateway."""
    rows = []
    for era, label, c in cases(args.concurrency, args.modern_only):
        direct_runs, through_runs = [], []
        for run in range(args.runs):
            direct_runs.append(measured(direct, era, c, args.seconds, None, pids))
            spy = None
            if args.profile and era == MODERN and c == args.concurrency[0] and run == 0:
                spy = Profiled(pids[0][0], args.profile, args.seconds)
            through_runs.append(measured(through, era, c, args.seconds, token, pids))
            if spy is not None:
                spy.wait()
        rows.append(median_row(label, direct_runs, through_runs))
        print(f"{label}: done", file=sys.stderr)
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--profile", type=Path, help="py-spy flame graph of the gateway (SVG)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="for 2 workers")
    parser.add_argument("--no-workers", action="store_true", help="skip the workers comparison")
    parser.add_argument("--only-workers", action="store_true", help="only the workers comparison")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor (a bare relay)")
    parser.add_argument(
        "--modern-only", action="store_true", help="only the 2026-07-28 era (for A/B runs)"
    )
    parser.add_argument(
        "--no-listing", action="store_true", help="skip the tools/list rows (a 100-tool server)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the gateway (and the floor) on a CPU of its own, the rest on the others: for a"
        " profile whose samples are CPU time",
    )
    parser.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-canned", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--canned-source", help=argparse.SUPPRESS)
    return parser.parse_args()


def start_listings(
    stack: ExitStack, log: IO[str], urls: dict[str, str]
) -> dict[str, subprocess.Popen[bytes]]:
    """The two 100-tool backends of the listing rows, added to the project's ``urls``."""
    backends: dict[str, subprocess.Popen[bytes]] = {}
    toolkit_port, backends[LISTING] = start_listing_backend(stack, log)
    urls[LISTING] = f"http://127.0.0.1:{toolkit_port}/mcp"
    canned_port, backends[CANNED] = start_canned(stack, urls[LISTING], log)
    urls[CANNED] = f"http://127.0.0.1:{canned_port}/mcp"
    return backends


def main() -> None:
    args = parse_args()
    if args.serve_backend:
        serve_backend(args.serve_backend)
    elif args.serve_canned:
        serve_canned(args.serve_canned, args.canned_source)
    else:
        measure(args)


def measure(args: argparse.Namespace) -> None:
    with ExitStack() as stack, tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        log = stack.enter_context((project / "bench.log").open("w"))
        backend_port, backend = start_backend(stack, log)
        direct = f"http://127.0.0.1:{backend_port}/mcp"
        urls = {"echo": direct}
        listing = not args.only_workers and not args.no_listing
        backends = start_listings(stack, log, urls) if listing else {}
        gateway_port = start_gateway(stack, project, urls, log)
        through = f"http://127.0.0.1:{gateway_port}/api/v1/mcp/echo/mcp"
        time.sleep(1.0)  # let the gateway load its registry from the store
        token = token_for(project, through, gateway_port)
        pids = ((listening_pid(gateway_port),), backend.pid)
        if args.pin:
            pin(pids[0], [backend.pid, *(process.pid for process in backends.values())])
        steal_before = steal_ticks()
        rows = [] if args.only_workers else overhead(args, direct, through, token, pids)
        floor_rows: list[Row] = []
        if not args.only_workers and not args.no_floor:
            relay_port, relay_pid = start_floor(stack, direct, log)
            if args.pin:
                pin([relay_pid], [])
            relay = f"http://127.0.0.1:{relay_port}/mcp"
            floor_rows = floor(args, direct, relay, ((relay_pid,), backend.pid))
        listing_rows = []
        if backends:
            where = Listing(
                project,
                gateway_port,
                through,
                backend.pid,
                backends[LISTING].pid,
                backends[CANNED].pid,
            )
            listing_rows = listings(args, where)
        workers: list[Row] = []
        if not args.no_workers and redis_reachable(args.redis_url):
            workers = compare_workers(stack, project, args, backend.pid, log)
        steal_after = steal_ticks()
        total = steal_after[1] - steal_before[1]
        steal = 100 * (steal_after[0] - steal_before[0]) / total if total else 0.0
        report(args, steal, rows, floor_rows, listing_rows, workers)


def report(
    args: argparse.Namespace,
    steal: float,
    rows: list[Row],
    floor_rows: list[Row],
    listing_rows: list[Row],
    workers: list[Row],
) -> None:
    if rows:
        print_table(rows, steal, args.runs, args.seconds)
    if floor_rows:
        print_floor(floor_rows, rows)
    if listing_rows:
        print_listings(listing_rows, args.concurrency[0], args.runs)
    if workers:
        print_workers(workers, len(CPUS), steal, args)
    elif not args.no_workers:
        print(f"\nworkers: not compared, no Redis at {args.redis_url} (--redis-url)")


if __name__ == "__main__":
    main()
