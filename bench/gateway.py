"""Gateway overhead: tools/call on a trivial tool, through the gateway and directly, in one run.

    .venv/bin/python bench/gateway.py [--seconds 5] [--concurrency 16 64]

Starts a backend (Atrium's toolkit, one uvicorn process) and a gateway (one uvicorn process,
audit on, SQLite store) on loopback, then drives the same stateless 2026-07-28 ``tools/call``
at each concurrency, first directly at the backend, then through the gateway, then through the
gateway to the same backend behind ``oauth.required`` with a bearer token, and prints
requests per second, p50 and p99 latency of both and their ratios. The load generator shares
the machine's cores with both servers, as it would on a developer's machine; the figures are
for comparing the two paths within one run, not absolute capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def call_body(request_id: int) -> bytes:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"name": "echo", "arguments": {"text": "hello"}, "_meta": meta}
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    return json.dumps(message).encode()


HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
    "Mcp-Name": "echo",
}


async def drive(
    url: str, concurrency: int, seconds: float, token: str | None = None
) -> tuple[float, list[float]]:
    """Requests per second and the latencies (ms) of ``concurrency`` workers for ``seconds``."""
    latencies: list[float] = []
    headers = {**HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker(deadline: float) -> None:
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                started = time.perf_counter()
                async with http.post(url, data=call_body(n), headers=headers) as response:
                    body = await response.read()
                    if response.status != 200 or b'"isError":true' in body:
                        raise RuntimeError(f"{url}: HTTP {response.status}: {body[:200]!r}")
                latencies.append((time.perf_counter() - started) * 1000)

        warmup = time.perf_counter() + 1.0
        await asyncio.gather(*(worker(warmup) for _ in range(concurrency)))
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def wait_http(url: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(
                ("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0])), 1
            ):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_servers(stack: ExitStack, project: Path) -> tuple[str, str, str]:
    backend_port, gateway_port = free_port(), free_port()
    (project / "services/mcp").mkdir(parents=True)
    direct = f"http://127.0.0.1:{backend_port}/mcp"
    server = {
        "bench": {
            # --unauthenticated: "direct" is the bare backend, the baseline the gateway's cost
            # (signing a caller assertion included) is measured against.
            "command": [
                *(PYTHON, str(HERE / "trivial_server.py"), "--port", "{port}"),
                "--unauthenticated",
            ],
            "port": backend_port,
            "oauth": {"required": False},
        },
        # The same backend again, behind OAuth: every call verifies a bearer token.
        "secure": {
            "transport": "remote",
            "url": direct,
            "oauth": {"required": True, "scopes": ["user"]},
        },
    }
    (project / "services/mcp/bench.yaml").write_text(json.dumps({"mcp_servers": server}))
    env = {
        **os.environ,
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_GATEWAY_PORT": str(gateway_port),
    }
    log = stack.enter_context((project / "bench.log").open("w"))
    atrium = [PYTHON, "-m", "atrium", "--project", str(project)]
    process = subprocess.Popen(
        [*atrium, "start"],
        env={**env, "ATRIUM_LOG_LEVEL": "warning"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack.callback(lambda: (process.terminate(), process.wait(30)))
    through = f"http://127.0.0.1:{gateway_port}/api/v1/mcp/bench/mcp"
    wait_http(direct)
    wait_http(through)
    return direct, through, f"http://127.0.0.1:{gateway_port}/api/v1/mcp/secure/mcp"


def token_for(project: Path, url: str) -> str:
    """A token for the ``secure`` server, signed with the project's key as the gateway's are."""
    from atrium.auth.access_tokens import TokenIssuer
    from atrium.auth.keys import KeySet
    from atrium.settings import load_settings

    port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
    settings = load_settings(project, environ={"ATRIUM_GATEWAY_PORT": port})
    issuer = TokenIssuer(KeySet.load(settings.state_dir), settings.issuer, ttl_s=3600)
    scopes = ["user", "tools:write"]  # ``user`` lets in, ``tools:write`` calls (auth.roles)
    token, _ = issuer.mint(subject="bench", client_id="bench", audience=[url], scopes=scopes)
    return token


Run = tuple[float, list[float]]


def report(concurrency: int, direct: Run, gateway: Run, secure: Run) -> None:
    d_rps, d_lat = direct
    d50, d99 = percentile(d_lat, 50), percentile(d_lat, 99)
    print(f"concurrency {concurrency}")
    print(f"  direct         {d_rps:8.1f} req/s  p50 {d50:7.2f} ms  p99 {d99:7.2f} ms")
    for label, (rps, lat) in (("gateway", gateway), ("gateway+oauth", secure)):
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        print(f"  {label:<14} {rps:8.1f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
        print(
            f"    ratio        throughput {rps / d_rps:.2f}  added p50 {p50 - d50:+.2f} ms", end=""
        )
        print(f"  added p99 {p99 - d99:+.2f} ms")


async def measure(
    urls: tuple[str, str, str], token: str, concurrencies: list[int], seconds: float
) -> None:
    direct, through, secure = urls
    for concurrency in concurrencies:
        report(
            concurrency,
            await drive(direct, concurrency, seconds),
            await drive(through, concurrency, seconds),
            await drive(secure, concurrency, seconds, token),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as folder:
        urls = start_servers(stack, Path(folder))
        time.sleep(1.0)  # let the gateway load its registry from the store
        token = token_for(Path(folder), urls[2])
        asyncio.run(measure(urls, token, args.concurrency, args.seconds))


if __name__ == "__main__":
    main()
