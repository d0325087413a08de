"""End to end: servers as real processes, stopped with SIGTERM as the supervisor stops them."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mcp.client.client import Client

from atrium.settings import Settings
from tests.processes import free_port
from tests.servers.helpers import DEADLINE_S, running, wait_for_file

HOLD_SERVER = Path(__file__).with_name("hold_server.py")
STOP_DEADLINE_S = 5.0
TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} INFO ", re.MULTILINE)


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=STOP_DEADLINE_S)


async def test_the_atrium_console_script_serves_then_exits_0_on_sigterm(
    project: Settings, tmp_path: Path
) -> None:
    binary = shutil.which("atrium-mcp-atrium", path=str(Path(sys.executable).parent))
    assert binary is not None
    port, log_file = free_port(), tmp_path / "standalone.log"
    argv = [binary, "--port", str(port), "--project", str(project.project_dir)]
    argv += ["--log-file", str(log_file), "--unauthenticated"]

    with running(argv, port, tmp_path / "output.log") as process:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            tools = [tool.name for tool in (await client.list_tools()).tools]
        code = stop(process)

    assert sorted(tools) == [
        "atrium",
        "list_agents",
        "list_playbooks",
        "run_agent",
        "show_playbook",
    ]
    assert code == 0
    assert TIMESTAMPED.search(log_file.read_text())
    assert "serving MCP server atrium" in log_file.read_text()


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_a_call_in_flight_at_sigterm_still_gets_its_answer(tmp_path: Path, mode: str) -> None:
    port, marker = free_port(), tmp_path / "in-flight"
    argv = [sys.executable, str(HOLD_SERVER), "--port", str(port), "--unauthenticated"]

    with running(argv, port, tmp_path / "output.log") as process:
        async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode) as client:
            await client.list_tools()  # the client checks results against the listed schemas
            call = asyncio.create_task(
                client.call_tool("hold", {"marker": str(marker), "seconds": 1})
            )
            await asyncio.to_thread(wait_for_file, marker)
            process.send_signal(signal.SIGTERM)
            result = await asyncio.wait_for(call, DEADLINE_S)
            code = await asyncio.to_thread(process.wait, STOP_DEADLINE_S)

    assert result.structured_content == {"result": "held"}
    assert code == 0
    assert "ERROR" not in (tmp_path / "output.log").read_text()
