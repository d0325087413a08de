"""Instructions per proxied ``tools/call`` (issue 17): a gauge the machine's drift cannot move.

    .venv/bin/python bench/callgrind.py [--calls 1000] [--concurrency 16] [--runs 2] [--floor]

CPU seconds per call drift by a quarter between runs on this machine (``bench/gateway.py``);
the number of instructions a process runs for the same work does not. This starts the echo
backend of ``bench/gateway.py`` natively and the gateway (``atrium start``, the same project:
OAuth required, a bearer token, audit on, SQLite) under valgrind's callgrind with its
instrumentation off; drives a warm-up, turns the instrumentation on (``callgrind_control -i
on``), drives ``--calls`` calls of the 2026-07-28 era from ``--concurrency`` closed-loop
clients, dumps the counters and prints the gateway's instructions per call (every thread: the
audit writer's too). ``--floor`` does the same for ``bench/floor_proxy.py`` (uvicorn, the
gateway's upstream client, nothing of Atrium's), whose figure is what the HTTP stack costs;
``--anonymous`` calls with no token a server open to anonymous callers (``oauth.dev_mode``):
the default figure less that one is what authenticating a caller costs.

Each run prints its count; two runs of one tree differ by the event loop's batching (how many
answers one ``epoll`` wakes), well under 1 %. Compare two trees by running this in each
(``PYTHONPATH=<other tree>/src``), one after the other: ``bench/ab.sh REV PAIRS callgrind``.
Valgrind runs the gateway ~50x slower, so it is the bottleneck of its own run and batches as
much as it can: compare counts with each other, never with ``bench/gateway.py``'s table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as harness  # bench/gateway.py: the backend, the project and the token

MODERN = harness.MODERN
WARMUP_CALLS = 200


async def drive(url: str, calls: int, concurrency: int, token: str | None) -> None:
    """``calls`` answered calls from ``concurrency`` closed-loop clients; any failure stops."""
    remaining = [calls]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            headers = harness.base_headers(MODERN, token)
            while remaining[0] > 0:
                remaining[0] -= 1
                body = harness.call_body(remaining[0], MODERN)
                async with http.post(url, data=body, headers=headers) as response:
                    answer = await response.read()
                    if response.status != 200 or b'"isError":true' in answer:
                        raise RuntimeError(f"{url}: HTTP {response.status}: {answer[:200]!r}")

        await asyncio.gather(*(client() for _ in range(concurrency)))


def valgrind(out: Path) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        "--quiet",
    ]


def control(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True)


def total_instructions(dump: Path) -> int:
    """The ``totals:`` line of a callgrind dump (events: Ir; its ``summary:`` counts only
    what ran while instrumentation was on at the start)."""
    text = dump.read_text(errors="replace")
    found = re.search(r"^totals: (\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"{dump}: no instruction total")
    return int(found.group(1))


def ready(url: str, token: str | None, deadline_s: float = 600) -> None:
    """Until a call goes through: the gateway loads its registry after it starts listening."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            asyncio.run(drive(url, 1, 1, token))
            return
        except (RuntimeError, aiohttp.ClientError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def counted(pid: int, out: Path, window: Callable[[], None]) -> int:
    """The instructions process ``pid`` (under ``valgrind(out)``) ran during ``window()``."""
    control(pid, "--zero")
    control(pid, "--instr=on")
    window()
    control(pid, "--instr=off")
    before = set(out.parent.glob(f"{out.name}*"))
    control(pid, "--dump")
    deadline = time.monotonic() + 60
    while not (dumps := set(out.parent.glob(f"{out.name}*")) - before):
        if time.monotonic() > deadline:
            raise RuntimeError("callgrind wrote no dump")
        time.sleep(0.2)
    time.sleep(0.5)  # let the dump be written whole
    return total_instructions(max(dumps, key=lambda p: p.stat().st_mtime))


def measure(
    pid: int, out: Path, url: str, args: argparse.Namespace, token: str | None
) -> tuple[float, float]:
    """Instructions per call of process ``pid``, and what the process runs in the same time
    with no call (its timers: the supervisor's, the store's polls), per call: the first less
    the second is the calls' own."""
    ready(url, token)
    asyncio.run(drive(url, WARMUP_CALLS, args.concurrency, token))
    started = time.monotonic()
    busy = counted(pid, out, lambda: asyncio.run(drive(url, args.calls, args.concurrency, token)))
    elapsed = time.monotonic() - started
    idle = counted(pid, out, lambda: time.sleep(elapsed))
    return busy / args.calls, idle / args.calls


def gateway_run(
    stack: ExitStack, work: Path, backend_url: str, args: argparse.Namespace
) -> tuple[float, float]:
    project = work / "project"
    project.mkdir()
    port = harness.free_port()
    harness.write_project(project, {"echo": backend_url})
    if args.anonymous:  # the same server open to callers without a token (local development)
        server = {"transport": "remote", "url": backend_url, "oauth": {"dev_mode": True}}
        config = json.dumps({"mcp_servers": {"echo": server}})
        (project / "services/mcp/bench.yaml").write_text(config)
    out = work / "gateway.callgrind"
    env = {
        **os.environ,
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_GATEWAY_PORT": str(port),
        "ATRIUM_LOG_LEVEL": "warning",
    }
    argv = [*valgrind(out), harness.PYTHON, "-m", "atrium", "--project", str(project), "start"]
    log = stack.enter_context((work / "gateway.log").open("w"))
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(harness.stop, process)
    harness.wait_port(port, deadline_s=600)
    url = f"http://127.0.0.1:{port}/api/v1/mcp/echo/mcp"
    token = None if args.anonymous else harness.token_for(project, url, port)
    return measure(process.pid, out, url, args, token)


def floor_run(
    stack: ExitStack, work: Path, backend_url: str, args: argparse.Namespace
) -> tuple[float, float]:
    port = harness.free_port()
    out = work / "floor.callgrind"
    script = str(harness.HERE / "floor_proxy.py")
    argv = [*valgrind(out), harness.PYTHON, script, "--port", str(port), "--backend", backend_url]
    log = stack.enter_context((work / "floor.log").open("w"))
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(harness.stop, process)
    harness.wait_port(port, deadline_s=600)
    return measure(process.pid, out, f"http://127.0.0.1:{port}/mcp", args, None)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--floor", action="store_true", help="the floor relay too")
    parser.add_argument(
        "--anonymous",
        action="store_true",
        help="no token: the server open to anonymous callers (oauth.dev_mode), so the figure"
        " less the default one is what authenticating a caller costs",
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the dumps here (for callgrind_annotate), else discarded"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind (with callgrind_control) is not installed")
    with ExitStack() as stack:
        backend_log = stack.enter_context(tempfile.TemporaryFile("w+"))
        backend_port, _ = harness.start_backend(stack, backend_log)
        backend_url = f"http://127.0.0.1:{backend_port}/mcp"
        for run in range(args.runs):
            with ExitStack() as inner:
                work = workspace(inner, args.keep, f"gateway-{run + 1}")
                report("gateway", run, *gateway_run(inner, work, backend_url, args))
            if args.floor:
                with ExitStack() as inner:
                    work = workspace(inner, args.keep, f"floor-{run + 1}")
                    report("floor", run, *floor_run(inner, work, backend_url, args))


def workspace(stack: ExitStack, keep: Path | None, name: str) -> Path:
    """A fresh folder for one run: under ``keep``, or a temporary one."""
    if keep is None:
        return Path(stack.enter_context(tempfile.TemporaryDirectory()))
    folder = keep / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def report(what: str, run: int, busy: float, idle: float) -> None:
    print(
        f"{what:8} run {run + 1}: {(busy - idle) / 1e6:.3f} M instructions per call"
        f" ({busy / 1e6:.3f} M in the window, {idle / 1e6:.3f} M of them idle work)"
    )


if __name__ == "__main__":
    main()
