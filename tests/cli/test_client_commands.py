"""``atrium client``, run as a user runs it: tools, call, resources and read over ``.mcp.json``
servers and the project's registry; ``.mcp.json`` mistakes exit 2 naming the file and key; a
remote server that asks for OAuth is signed in to through the browser, once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import CliResult, run_atrium
from tests.e2e.instance import Instance, started_instance

REPO = Path(__file__).resolve().parents[2]
EVERYTHING = REPO / ".cache/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")
SIGN_IN = REPO / "tests/e2e/sign_in.py"


def atrium(project: Path, *args: str) -> CliResult:
    """``atrium client ARGS`` in this process; the stdio servers it starts are subprocesses."""
    return run_atrium("--project", str(project), "client", *args, env={"NO_COLOR": "1"})


def atrium_process(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``atrium client ARGS`` in a subprocess of its own: Python's ``webbrowser`` reads
    ``$BROWSER`` once per process, and the sign-in test changes it between two runs."""
    return subprocess.run(
        [sys.executable, "-m", "atrium", "--project", str(project), "client", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
    )


def config(folder: Path, servers: dict[str, Any]) -> Path:
    path = folder / ".mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"command": TIME_SERVER, "env": {"TOKEN": "${ATRIUM_TEST_UNSET_VARIABLE}"}},
            "server 'time': mcpServers.time.env.TOKEN: ${ATRIUM_TEST_UNSET_VARIABLE} is not set",
        ),
        (
            {"command": TIME_SERVER, "timeout": 5},
            "server 'time': mcpServers.time.timeout: unknown key",
        ),
        (
            {"command": TIME_SERVER, "args": "--x"},
            "server 'time': mcpServers.time.args: Input should be a valid list",
        ),
        ({"args": ["x"]}, "server 'time': mcpServers.time.command: Field required"),
    ],
)
def test_a_wrong_mcp_json_exits_2_naming_file_and_key(
    tmp_path: Path, entry: dict[str, Any], expected: str
) -> None:
    path = config(tmp_path, {"time": entry})

    done = atrium(tmp_path, "tools", "--config", str(path))

    assert done.exit_code == 2, done.stderr
    assert f"{path}: {expected}" in " ".join(done.stderr.split()), done.stderr
    assert "Traceback" not in done.stderr


def test_tools_call_resources_and_read_over_stdio_servers(tmp_path: Path) -> None:
    if shutil.which("node") is None or not EVERYTHING.exists():
        pytest.fail("@modelcontextprotocol/server-everything is missing: run scripts/npm-deps")
    path = config(
        tmp_path,
        {
            "time": {"command": TIME_SERVER},
            "everything": {"command": "node", "args": [str(EVERYTHING)]},
        },
    )
    options = ["--config", str(path)]

    tools = json.loads(atrium(tmp_path, "tools", *options, "--json").stdout)
    called = atrium(
        tmp_path, "call", "mcp__time__get_current_time", '{"timezone": "Etc/UTC"}', *options
    )
    failed = atrium(
        tmp_path, "call", "mcp__time__get_current_time", '{"timezone": "Nowhere/X"}', *options
    )
    listed = json.loads(atrium(tmp_path, "resources", *options, "--json").stdout)
    text = next(r for r in listed if r["mimeType"].startswith("text/"))
    read = atrium(tmp_path, "read", "everything", text["uri"], *options)

    names = {tool["name"] for tool in tools}
    assert {"mcp__time__get_current_time", "mcp__everything__echo"} <= names
    assert called.exit_code == 0, called.stderr
    assert json.loads(called.stdout)["timezone"] == "Etc/UTC"
    assert failed.exit_code == 1
    assert {r["server"] for r in listed} == {"everything"}
    assert read.exit_code == 0, read.stderr
    assert read.stdout.strip()
    assert (tmp_path / "logs" / "mcp-client-everything.log").exists()


@pytest.mark.parametrize("fmt", ["openai", "openai-responses", "anthropic", "gemini"])
def test_tools_print_in_each_model_format(tmp_path: Path, fmt: str) -> None:
    path = config(tmp_path, {"time": {"command": TIME_SERVER}})

    done = atrium(tmp_path, "tools", "--config", str(path), "--format", fmt)

    assert done.exit_code == 0, done.stderr
    tools = json.loads(done.stdout)
    names = [t.get("name") or t.get("function", {}).get("name") for t in tools]
    assert "mcp__time__get_current_time" in names
    assert {"list_mcp_resources", "read_mcp_resource"} <= set(names)


def test_an_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    path = config(tmp_path, {"time": {"command": TIME_SERVER}})

    done = atrium(tmp_path, "tools", "--config", str(path), "--format", "llama")

    assert done.exit_code == 2
    assert "--format must be one of" in done.stderr


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    with started_instance(tmp_path_factory.mktemp("client") / "project") as running:
        yield running


def test_registry_servers_are_reached_through_the_gateway(instance: Instance) -> None:
    tools = json.loads(instance.atrium("client", "tools", "--registry", "--json"))
    called = instance.atrium("client", "call", "mcp__atrium__list_playbooks", "{}", "--registry")

    assert "mcp__atrium__list_playbooks" in {tool["name"] for tool in tools}
    assert "add-a-stdio-server" in called


def test_a_remote_server_that_asks_for_oauth_is_signed_in_to_once(
    instance: Instance, tmp_path: Path
) -> None:
    path = config(tmp_path, {"remote": {"type": "http", "url": instance.url("atrium")}})
    browser = {
        "BROWSER": f"{sys.executable} {SIGN_IN} %s",
        "ATRIUM_TEST_USER": "admin",
        "ATRIUM_TEST_PASSWORD": instance.password,
    }
    project = tmp_path / "client-project"
    project.mkdir()

    first = atrium_process(
        project, "call", "mcp__remote__list_playbooks", "{}", "-c", str(path), env=browser
    )
    no_browser = {**browser, "BROWSER": "false"}
    again = atrium_process(
        project, "call", "mcp__remote__list_playbooks", "{}", "-c", str(path), env=no_browser
    )

    assert first.returncode == 0, first.stderr
    assert "sign in at" in first.stderr
    assert "add-a-stdio-server" in first.stdout
    assert again.returncode == 0, again.stderr
    assert "sign in at" not in again.stderr
    (stored,) = (project / ".atrium/client-credentials").iterdir()
    assert stored.stat().st_mode & 0o777 == 0o600
