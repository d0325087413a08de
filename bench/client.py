"""The connection manager's costs, against its two budgets, from one run:

    .venv/bin/python bench/client.py [--calls 2000] [--servers 20] [--ready-after 0.5]

1. CPU per call that ``McpManager.call`` adds over a bare SDK ``Client.call_tool`` on the same
   stdio server (process CPU time of this process; the server's is its own): budget 0.2 ms.
2. Connecting ``--servers`` stdio servers in parallel, against the slowest of them connected
   alone: budget 1.5x. The servers (``bench/stdio_echo.py``) wait ``--ready-after`` seconds
   (default 1) before their first answer, as servers whose start waits on I/O do (npx, a login,
   a database); with ``--ready-after 0`` the figure is mostly the machine starting that many
   Pythons at once on its cores, which the manager's own CPU per server (printed) is not.

Each line prints the measure and its ratio to the budget (below 1.00 meets it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from atrium.client.manager import McpManager
from atrium.client.mcpjson import ServerSpec, StdioTarget

ECHO_SERVER = str(Path(__file__).with_name("stdio_echo.py"))
CALL_BUDGET_MS = 0.2
CONNECT_BUDGET = 1.5


def _spec(name: str, ready_after: float) -> ServerSpec:
    args = ("-S", ECHO_SERVER, "--ready-after", str(ready_after))  # -S: no site, a quick start
    return ServerSpec(name, StdioTarget(sys.executable, args))


async def _bare_cpu(calls: int, log: Path) -> float:
    parameters = StdioServerParameters(command=sys.executable, args=[ECHO_SERVER])
    with log.open("a") as errlog:
        async with Client(stdio_client(parameters, errlog=errlog)) as client:
            await client.call_tool("echo", {"message": "warm"})
            started = time.process_time()
            for index in range(calls):
                await client.call_tool("echo", {"message": f"m{index}"})
            return time.process_time() - started


async def _manager_cpu(calls: int, log_dir: Path) -> float:
    async with McpManager([_spec("echo", 0)], log_dir=log_dir) as manager:
        await manager.call("mcp__echo__echo", {"message": "warm"})
        started = time.process_time()
        for index in range(calls):
            result = await manager.call("mcp__echo__echo", {"message": f"m{index}"})
            assert not result.is_error
        return time.process_time() - started


async def _connect_s(specs: list[ServerSpec], log_dir: Path) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) to connect ``specs`` and list their tools."""
    started, cpu = time.perf_counter(), time.process_time()
    async with McpManager(specs, log_dir=log_dir) as manager:
        elapsed, used = time.perf_counter() - started, time.process_time() - cpu
        assert all(status.error is None for status in manager.status())
    return elapsed, used


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--servers", type=int, default=20)
    parser.add_argument("--ready-after", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        logs = Path(folder)
        bare = await _bare_cpu(args.calls, logs / "bare.log")
        managed = await _manager_cpu(args.calls, logs)
        added_ms = max(managed - bare, 0.0) / args.calls * 1000
        print(
            f"call: bare SDK {bare / args.calls * 1000:.3f} ms CPU, manager"
            f" {managed / args.calls * 1000:.3f} ms CPU, added {added_ms:.3f} ms"
            f" (budget {CALL_BUDGET_MS} ms): ratio {added_ms / CALL_BUDGET_MS:.2f}"
        )
        specs = [_spec(f"s{index}", args.ready_after) for index in range(args.servers)]
        alone = [(await _connect_s([spec], logs))[0] for spec in specs]
        together, cpu = await _connect_s(specs, logs)
        ratio = together / max(alone)
        print(
            f"connect: {args.servers} servers in parallel {together:.2f} s, slowest alone"
            f" {max(alone):.2f} s: {ratio:.2f}x (budget {CONNECT_BUDGET}x):"
            f" ratio {ratio / CONNECT_BUDGET:.2f}; the manager's own CPU"
            f" {cpu / args.servers * 1000:.1f} ms per server"
        )


if __name__ == "__main__":
    asyncio.run(main())
