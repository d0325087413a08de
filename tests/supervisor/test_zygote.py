"""Built-in servers forked by the zygote are the supervisor's own children in every way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from atrium.registry.loader import load_registry
from atrium.settings import Settings, load_settings
from atrium.supervisor.supervisor import RestartPolicy, Supervisor
from tests.polling import until
from tests.processes import alive, free_port

FAST = RestartPolicy(max_crashes=3, window_s=30, backoff_base_s=0.05, health_deadline_s=60)


def builtin_project(tmp_path: Path, *names: str) -> Settings:
    (tmp_path / "services/mcp").mkdir(parents=True)
    servers = {name: {"binary": f"atrium-mcp-{name}", "port": free_port()} for name in names}
    (tmp_path / "services/mcp/servers.yaml").write_text(json.dumps({"mcp_servers": servers}))
    return load_settings(tmp_path, environ={**os.environ, "ATRIUM_PORT_RANGE": "1024-65535"})


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


async def test_built_in_servers_are_forked_children_of_the_supervisor(tmp_path: Path) -> None:
    settings = builtin_project(tmp_path, "atrium", "soul")
    supervisor = Supervisor(settings, load_registry(settings), FAST)
    try:
        assert await supervisor.start() == {"atrium": None, "soul": None}
        pids: dict[str, int] = {}
        for name in ("atrium", "soul"):
            pid = supervisor.state.servers[name].pid
            assert pid is not None
            pids[name] = pid
            assert parent_of(pid) == os.getpid()  # reparented to us, not the zygote's
            assert os.getpgid(pid) == pid  # its own session and group, as an exec'd one
            assert "atrium.servers.zygote" in cmdline(pid)  # forked, not started anew
            port = supervisor.state.servers[name].port
            async with httpx2.AsyncClient() as http:
                assert (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
        log = (settings.logs_dir / "mcp-soul.log").read_text()
        assert "serving MCP server soul" in log  # its output goes to its own log

        # A crash is seen (a pidfd, not asyncio's watcher) and the server forked again.
        os.kill(pids["soul"], signal.SIGKILL)
        soul = supervisor.state.servers["soul"]
        await until(
            lambda: soul.pid not in (None, pids["soul"]) and soul.state == "running",
            what="soul forked again",
            timeout_s=60,
        )
        assert soul.restarts == 1
        assert not alive(pids["soul"])  # reaped, not a zombie
    finally:
        await supervisor.close()
    assert not any(alive(pid) for pid in pids.values())


async def test_a_dead_zygote_costs_only_speed(tmp_path: Path) -> None:
    settings = builtin_project(tmp_path, "atrium")
    supervisor = Supervisor(settings, load_registry(settings), FAST)
    try:
        assert await supervisor.start() == {"atrium": None}
        zygote = supervisor._zygote
        assert zygote is not None
        os.kill(zygote.pid, signal.SIGKILL)
        await until(lambda: not zygote.alive, what="the zygote gone")

        assert await supervisor.restart(["atrium"]) == {"atrium": None}
        pid = supervisor.state.servers["atrium"].pid
        assert pid is not None
        assert alive(pid)
        assert parent_of(pid) == os.getpid()
    finally:
        await supervisor.close()


@pytest.mark.parametrize("program", ["atrium-mcp-nothing", "python3"])
def test_the_zygote_forks_only_built_in_servers(program: str) -> None:
    """Asked for any other program, the zygote answers an error and forks nothing."""
    env = {**os.environ, "ATRIUM_SUPERVISOR_PID": str(os.getpid())}
    request = {"program": program, "argv": [program], "env": {}, "cwd": "/", "log": "/dev/null"}
    done = subprocess.run(
        [sys.executable, "-m", "atrium.servers.zygote"],
        input=json.dumps(request) + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    ready, answer = (json.loads(line) for line in done.stdout.splitlines())
    assert sorted(ready["ready"]) == [
        "atrium-mcp-atrium",
        "atrium-mcp-content-manager",
        "atrium-mcp-marketplace",
        "atrium-mcp-soul",
    ]
    assert answer == {"error": f"ValueError: not a built-in server: '{program}'"}


def test_the_zygote_refuses_to_run_for_anyone_but_a_supervisor() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ATRIUM_SUPERVISOR_PID"}
    done = subprocess.run(
        [sys.executable, "-m", "atrium.servers.zygote"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "only Atrium's supervisor starts this program" in done.stderr
