"""Servers do not outlive a supervisor that was killed outright (SIGKILL cannot be caught)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from atrium.runstate import read_state
from atrium.supervisor.reaper import children_of
from tests.polling import wait_until
from tests.processes import alive, free_port

TIME = Path(sys.executable).parent / "mcp-server-time"


def test_servers_stop_by_themselves_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    (tmp_path / "services/mcp").mkdir(parents=True)
    servers = {
        "atrium": {"binary": "atrium-mcp-atrium", "port": free_port()},
        "time": {"transport": "stdio", "command": [str(TIME)], "port": free_port()},
    }
    (tmp_path / "services/mcp/servers.yaml").write_text(json.dumps({"mcp_servers": servers}))
    env = {**os.environ, "ATRIUM_PORT_RANGE": "1024-65535"}
    command = [sys.executable, "-m", "atrium", "--project", str(tmp_path), "start", "mcp"]
    with (tmp_path / "supervisor.out").open("w") as output:
        supervisor = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        state_dir = tmp_path / ".atrium"
        wait_until(
            lambda: (s := read_state(state_dir)) is not None and s.ready,
            timeout_s=60,
            what="the servers",
        )
        state = read_state(state_dir)
        assert state is not None
        assert {s.state for s in state.servers.values()} == {"running"}
        hosted = [s.pid for s in state.servers.values() if s.pid]
        tree = {*hosted, *(child for pid in hosted for child in children_of(pid))}
        assert len(tree) >= 3  # two servers and the stdio child of the bridge

        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(10)

        wait_until(
            lambda: not any(alive(pid) for pid in tree), timeout_s=20, what="the servers to stop"
        )
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(10)
