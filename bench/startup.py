"""How long ``atrium start`` takes until the gateway and the four built-in servers are healthy,
against its budget (issue 14: 3 s), from one run of a few starts:

    .venv/bin/python bench/startup.py [--runs 3]

Each run makes a fresh project with ``atrium init`` (not timed), gives every server a free port,
then times ``atrium start`` from the moment the process is spawned until the gateway and every
built-in server answer ``/health``. Prints each run (and which came last), the median and its
ratio to the budget (below 1.00 meets it).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

BUDGET_S = 3.0
BUILTINS = ("atrium", "soul", "content-manager", "marketplace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _project(folder: Path, gateway_port: int) -> tuple[dict[str, str], dict[str, int]]:
    env = {
        **os.environ,
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_GATEWAY_PORT": str(gateway_port),
        "ATRIUM_PUBLIC_URL": f"http://127.0.0.1:{gateway_port}",
        "NO_COLOR": "1",
    }
    atrium = [sys.executable, "-m", "atrium", "--project", str(folder)]
    subprocess.run([*atrium, "init"], env=env, check=True, capture_output=True)
    ports = {"gateway": gateway_port}
    for name in BUILTINS:
        path = folder / f"services/mcp/{name}.yaml"
        ports[name] = _free_port()
        path.write_text(re.sub(r"port: \d+", f"port: {ports[name]}", path.read_text()))
    return env, ports


def _healthy(client: httpx2.Client, port: int) -> bool:
    try:
        return client.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx2.HTTPError:
        return False


def one_start(folder: Path) -> tuple[float, dict[str, float]]:
    """Seconds until all are healthy, and when each was first seen healthy."""
    env, ports = _project(folder, _free_port())
    argv = [sys.executable, "-m", "atrium", "--project", str(folder), "start"]
    seen: dict[str, float] = {}
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        with httpx2.Client() as client:
            while len(seen) < len(ports):
                if process.poll() is not None:
                    raise SystemExit(f"atrium start exited with {process.returncode}")
                if time.perf_counter() - started > 60:
                    raise SystemExit(f"not healthy after 60 s: {sorted(set(ports) - set(seen))}")
                for name, port in ports.items():
                    if name not in seen and _healthy(client, port):
                        seen[name] = time.perf_counter() - started
                time.sleep(0.02)
        return time.perf_counter() - started, seen
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    totals = []
    for number in range(1, runs + 1):
        with tempfile.TemporaryDirectory() as folder:
            total, seen = one_start(Path(folder) / "project")
        totals.append(total)
        order = sorted(seen.items(), key=lambda item: item[1])
        each = ", ".join(f"{name} {at:.2f}" for name, at in order)
        print(f"run {number}: all healthy after {total:.2f} s ({each})")
    median = statistics.median(totals)
    print(f"startup median {median:.2f} s; budget {BUDGET_S:.1f} s; ratio {median / BUDGET_S:.2f}")


if __name__ == "__main__":
    main()
