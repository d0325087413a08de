"""``atrium start`` killed at any moment of its start-up or shutdown leaves nothing running.

A service manager stops a service with SIGTERM and, a moment later, SIGKILL; the OOM killer
sends SIGKILL alone. Nothing can catch it: the servers must notice by themselves (the kernel's
parent-death signal, ``atrium.deathsig``), whatever they were doing — being forked by the
zygote, importing, binding their port, serving, or shutting down — and the next ``atrium
start`` must find every port free. Each try kills at a different moment, spread over the whole
start-up (0 to 2.4 s after spawning) and over the shutdown (0 to 0.7 s after SIGTERM).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from atrium.deathsig import SUPERVISOR_PID_VARIABLE
from tests.cli.helpers import run_atrium
from tests.polling import wait_until
from tests.processes import free_port, free_server_ports

BUILTINS = ("atrium", "soul", "content-manager", "marketplace")
START_UP_MOMENTS = [round(0.2 * n, 1) for n in range(13)]  # 0.0 .. 2.4 s after spawning
SHUTDOWN_MOMENTS = [round(0.1 * n, 1) for n in range(7)]  # 0.0 .. 0.6 s after SIGTERM


def processes_of(supervisor: int) -> list[int]:
    """Every process the supervisor ``supervisor`` started (they carry its pid)."""
    mark = f"{SUPERVISOR_PID_VARIABLE}={supervisor}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if mark in environ.split(b"\0") and stat[stat.rfind(")") + 2] != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("killed")
    port = free_port()
    env = {
        **os.environ,
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_GATEWAY_PORT": str(port),
        "ATRIUM_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    initialized = run_atrium("--project", str(folder), "init", env=env)  # no process to kill
    assert initialized.exit_code == 0, initialized.stderr
    free_server_ports(folder)
    return folder, env


def start(folder: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "atrium", "--project", str(folder), "start"]
    with (folder / "start.out").open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def all_healthy(folder: Path, env: dict[str, str]) -> bool:
    ports = [env["ATRIUM_GATEWAY_PORT"]]
    for name in BUILTINS:
        text = (folder / f"services/mcp/{name}.yaml").read_text()
        ports.append(text.split("port:")[1].split()[0])
    try:
        with httpx2.Client(timeout=1) as http:
            return all(
                http.get(f"http://127.0.0.1:{port}/health").status_code == 200 for port in ports
            )
    except httpx2.HTTPError:
        return False


def kill_and_check(process: subprocess.Popen[bytes], seen: set[int], moment: str) -> None:
    """SIGKILL ``process``; every process it started must be gone soon after."""
    seen.update(processes_of(process.pid))
    process.kill()
    process.wait(10)
    wait_until(
        lambda: not processes_of(process.pid),
        timeout_s=20,
        what=f"every process of the supervisor killed {moment} to end",
        detail=lambda: f"still running: {processes_of(process.pid)}",
    )


def test_a_supervisor_killed_at_any_moment_leaves_nothing_running(
    project: tuple[Path, dict[str, str]],
) -> None:
    folder, env = project
    seen: set[int] = set()
    for delay in START_UP_MOMENTS:
        process = start(folder, env)
        time.sleep(delay)
        kill_and_check(process, seen, f"{delay} s into its start")

    for delay in SHUTDOWN_MOMENTS:
        process = start(folder, env)
        wait_until(lambda: all_healthy(folder, env), timeout_s=60, what="Atrium healthy")
        seen.update(processes_of(process.pid))
        process.send_signal(signal.SIGTERM)
        time.sleep(delay)
        kill_and_check(process, seen, f"{delay} s into its shutdown")

    assert len(seen) >= 5  # the kills did find servers (and the zygote) running
    process = start(folder, env)  # every port is free again: the next start succeeds
    try:
        wait_until(lambda: all_healthy(folder, env), timeout_s=60, what="Atrium healthy again")
    finally:
        process.terminate()
        process.wait(30)
