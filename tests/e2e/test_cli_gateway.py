"""End to end: the ``atrium`` command as a client of its own gateway, and its logs.

One project for the module, started once in the background (``infra services start --all
--detach``) on free loopback ports; every command a test checks runs as a real subprocess
(waiting for an audit record polls in this process: a subprocess a poll cost a second each).
The last test stops Atrium and checks that the commands then say how to start it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.atrium_cli import Atrium
from tests.cli.helpers import run_atrium
from tests.polling import wait_until
from tests.processes import free_port, free_server_ports, only_builtins


@pytest.fixture(scope="module")
def atrium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Atrium]:
    project = tmp_path_factory.mktemp("cli-gateway") / "project"
    run = Atrium.on_free_ports(project)
    assert run("init").returncode == 0
    free_server_ports(project)
    only_builtins(project, ["atrium"])
    server = {"binary": "atrium-mcp-atrium", "port": free_port(), "oauth": {"required": False}}
    (project / "services/mcp/atrium.yaml").write_text(
        json.dumps({"mcp_servers": {"atrium": server}})
    )
    with run.running():
        yield run


def mcp(atrium: Atrium, *args: str) -> subprocess.CompletedProcess[str]:
    return atrium("plugins", "mcp", *args)


def request_id(result: subprocess.CompletedProcess[str]) -> str:
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("request id: ")]
    return line.removeprefix("request id: ")


def test_tools_json_lists_the_atrium_servers_tools(atrium: Atrium) -> None:
    result = mcp(atrium, "tools", "atrium", "--json")

    assert result.returncode == 0, result.stderr
    tools = {tool["name"]: tool for tool in json.loads(result.stdout)}
    assert {"atrium", "list_playbooks", "show_playbook"} <= set(tools)
    assert tools["show_playbook"]["inputSchema"]["required"] == ["name"]


def test_tools_table_shows_hints_and_parameters(atrium: Atrium) -> None:
    result = mcp(atrium, "tools", "atrium")

    row = next(line for line in result.stdout.splitlines() if "show_playbook" in line)
    assert "read-only" in row
    assert "name: string" in row


def test_call_list_playbooks_prints_the_playbooks(atrium: Atrium) -> None:
    result = mcp(atrium, "call", "atrium", "list_playbooks")

    assert result.returncode == 0, result.stderr
    names = [p["name"] for p in json.loads(result.stdout)["playbooks"]]
    assert "add-a-stdio-server" in names
    assert len(request_id(result)) == 32


def test_call_answered_with_a_tool_error_exits_1_with_the_error_on_stderr(atrium: Atrium) -> None:
    result = mcp(atrium, "call", "atrium", "show_playbook", "name=nope")

    assert result.returncode == 1
    assert result.stdout == ""
    assert "tool error" in result.stderr
    assert "nope" in result.stderr


def test_call_with_json_args_runs_an_atrium_command(atrium: Atrium) -> None:
    args = json.dumps({"command": "plugins mcp list --json"})

    result = mcp(atrium, "call", "atrium", "atrium", "--args", args)

    assert result.returncode == 0, result.stderr
    listed, *links, structured = result.stdout.split("\n\n")
    assert "atrium" in {server["name"] for server in json.loads(listed)}
    assert [link.startswith("[resource link artifact://atrium/") for link in links] == [True]
    assert json.loads(structured)["exit_code"] == 0


def test_call_json_prints_the_whole_call_tool_result(atrium: Atrium) -> None:
    result = mcp(atrium, "call", "atrium", "show_playbook", "name=nope", "--json")

    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["isError"] is True
    assert answer["content"][0]["type"] == "text"


def test_validate_reports_protocol_server_capabilities_and_tools(atrium: Atrium) -> None:
    result = mcp(atrium, "validate", "atrium", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["protocol_version"] == "2026-07-28"
    assert report["server_name"] == "atrium"
    assert "tools" in report["capabilities"]
    assert report["tool_count"] >= 3


def test_validate_with_the_legacy_handshake_negotiates_an_older_protocol(atrium: Atrium) -> None:
    result = mcp(atrium, "validate", "atrium", "--protocol", "legacy")

    assert result.returncode == 0, result.stderr
    assert "2025-11-25" in result.stdout
    assert "atrium: valid" in result.stdout


def test_test_times_each_round_trip(atrium: Atrium) -> None:
    result = mcp(atrium, "test", "atrium", "--count", "2", "--json")

    assert result.returncode == 0, result.stderr
    timing = json.loads(result.stdout)
    assert len(timing["round_trips_ms"]) == 2
    assert 0 < timing["min_ms"] <= timing["avg_ms"] <= timing["max_ms"]


def test_an_unknown_server_behind_an_explicit_url_is_the_gateways_json_rpc_error(
    atrium: Atrium,
) -> None:
    port = atrium.env["ATRIUM_GATEWAY_PORT"]
    url = f"http://127.0.0.1:{port}/api/v1/mcp/nope/mcp"

    result = mcp(atrium, "tools", "nope", "--url", url)

    assert result.returncode == 1
    assert "JSON-RPC error -32600" in result.stderr


def test_request_list_shows_the_calls_and_audit_full_shows_their_arguments(
    atrium: Atrium,
) -> None:
    called = mcp(atrium, "call", "atrium", "show_playbook", "name=audit-me")
    wanted = request_id(called)

    def recorded() -> bool:
        listing = ("infra", "logs", "request", "list", "--limit", "5", "--json")
        listed = run_atrium("--project", str(atrium.project), *listing, env=atrium.env)
        return wanted in {record["request_id"] for record in json.loads(listed.stdout)}

    wait_until(recorded, timeout_s=30, what="the audit record")
    table = atrium("infra", "logs", "request", "list", "--limit", "5")
    audit = atrium("infra", "logs", "audit", wanted, "--full")

    row = next(line for line in table.stdout.splitlines() if wanted in line)
    assert row.split()[3:7] == ["atrium", "tools/call", "show_playbook", "tool_error"]
    assert audit.returncode == 0, audit.stderr
    assert '"name": "audit-me"' in audit.stdout


def test_logs_view_shows_the_servers_lines_of_the_last_hour(atrium: Atrium) -> None:
    result = atrium("infra", "logs", "view", "--since", "1h", "--server", "atrium", "-n", "0")

    sources = {line.split()[0] for line in result.stdout.splitlines()}
    assert result.returncode == 0, result.stderr
    assert sources == {"gateway.log", "mcp-atrium.log", "audit"}  # audit: the calls above
    assert "mcp tool call atrium/show_playbook" in result.stdout


def test_after_stop_the_commands_exit_1_telling_to_start_atrium(atrium: Atrium) -> None:
    assert atrium("infra", "services", "stop").returncode == 0

    result = mcp(atrium, "tools", "atrium")

    assert result.returncode == 1
    assert "atrium start" in result.stderr
    assert "Traceback" not in result.stderr
