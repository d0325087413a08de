"""The seeds' ``plugins mcp`` commands without a server name, against a running Atrium.

One project for the module, started in the background on free loopback ports with four
enabled servers: ``atrium`` and ``twin`` (the same program, so each tool is offered twice),
``everything`` (tools no other server has) and ``gone``, a remote server nothing answers for.
Every command runs as a real subprocess.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.atrium_cli import Atrium
from tests.polling import wait_until
from tests.processes import free_port


def _server(project: Path, name: str, config: dict[str, object]) -> None:
    config = {**config, "oauth": {"required": False}}
    (project / f"services/mcp/{name}.yaml").write_text(json.dumps({"mcp_servers": {name: config}}))


@pytest.fixture(scope="module")
def atrium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Atrium]:
    project = tmp_path_factory.mktemp("seed-commands") / "project"
    run = Atrium.on_free_ports(project)
    assert run("init").returncode == 0
    for builtin in ("soul", "content-manager", "marketplace"):  # these tests need only atrium
        (project / f"services/mcp/{builtin}.yaml").unlink()
    for name, binary in [
        ("atrium", "atrium-mcp-atrium"),
        ("twin", "atrium-mcp-atrium"),
        ("everything", "atrium-mcp-everything"),
    ]:
        _server(project, name, {"binary": binary, "port": free_port()})
    gone = f"http://127.0.0.1:{free_port()}/mcp"
    _server(project, "gone", {"transport": "remote", "url": gone})
    with run.running():
        yield run


def mcp(atrium: Atrium, *args: str) -> subprocess.CompletedProcess[str]:
    return atrium("plugins", "mcp", *args)


def rows(output: str) -> dict[str, list[str]]:
    """A table's rows by their first cell (the server)."""
    return {line.split()[0]: line.split() for line in output.splitlines() if line.strip()}


def test_validate_without_a_server_checks_every_enabled_one_and_exits_1_for_the_one_down(
    atrium: Atrium,
) -> None:
    result = mcp(atrium, "validate")

    assert result.returncode == 1, result.stderr
    table = rows(result.stdout)
    assert [table[name][1] for name in ("atrium", "twin", "everything")] == ["valid"] * 3
    assert table["gone"][1] == "unreachable"
    assert "marketplace" not in table  # disabled by init
    assert "Traceback" not in result.stderr


def test_validate_json_gives_each_servers_report_or_its_error(atrium: Atrium) -> None:
    result = mcp(atrium, "validate", "--json")

    reports = {report["server"]: report for report in json.loads(result.stdout)}
    assert set(reports) == {"atrium", "twin", "everything", "gone"}
    assert reports["atrium"]["ok"] is True
    assert reports["atrium"]["tool_count"] == 5
    assert reports["gone"]["ok"] is False
    assert "gone" in reports["gone"]["error"]


def test_validate_without_a_server_exits_0_when_every_enabled_server_is_valid(
    atrium: Atrium,
) -> None:
    gone = atrium.project / "services/mcp/gone.yaml"
    saved = gone.read_text()
    gone.write_text(saved.replace('"oauth"', '"enabled": false, "oauth"'))
    try:
        result = mcp(atrium, "validate")
    finally:
        gone.write_text(saved)

    assert result.returncode == 0, result.stdout + result.stderr
    assert set(rows(result.stdout)) >= {"atrium", "twin", "everything"}
    assert "gone" not in rows(result.stdout)


def test_tools_without_a_server_lists_each_tool_with_its_server(atrium: Atrium) -> None:
    result = mcp(atrium, "tools")

    lines = [line.split() for line in result.stdout.splitlines() if len(line.split()) > 1]
    pairs = {(line[0], line[1]) for line in lines}
    assert {("atrium", "list_playbooks"), ("twin", "list_playbooks")} <= pairs
    assert ("everything", "test_simple_text") in pairs
    assert ["gone", "(not", "listed)"] in [line[:3] for line in lines]
    assert "gone: tools not listed" in result.stderr
    assert result.returncode == 1  # a server could not be listed


def test_tools_json_without_a_server_groups_the_tools_by_server(atrium: Atrium) -> None:
    result = mcp(atrium, "tools", "--json")

    listed = {entry["server"]: entry for entry in json.loads(result.stdout)}
    assert {tool["name"] for tool in listed["twin"]["tools"]} == {
        "atrium",
        "list_agents",
        "list_playbooks",
        "run_agent",
        "show_playbook",
    }
    assert listed["twin"]["error"] is None
    assert listed["gone"]["tools"] is None
    assert listed["gone"]["error"]


def test_logs_without_a_server_prints_each_enabled_servers_lines_after_its_name(
    atrium: Atrium,
) -> None:
    result = mcp(atrium, "logs", "--lines", "3")

    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"atrium", "twin", "everything", "gone"} == set(names)
    assert names.count("atrium") == 3
    (gone,) = [line for line in result.stdout.splitlines() if line.startswith("gone")]
    assert "remote" in gone


def test_call_without_a_server_finds_the_one_server_that_offers_the_tool(atrium: Atrium) -> None:
    result = mcp(atrium, "call", "test_simple_text")

    assert result.returncode == 0, result.stderr
    assert "simple text response" in result.stdout


def test_call_of_a_tool_several_servers_offer_exits_2_naming_them(atrium: Atrium) -> None:
    result = mcp(atrium, "call", "list_playbooks")

    assert result.returncode == 2
    assert "atrium, twin" in result.stderr
    assert "--server" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "words",
    [
        ["list_playbooks", "--server", "twin"],
        ["twin", "list_playbooks"],
        ["-s", "twin", "atrium", "command=plugins mcp list --json"],
    ],
)
def test_call_with_the_server_named_either_way_calls_it(atrium: Atrium, words: list[str]) -> None:
    result = mcp(atrium, "call", *words)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_call_of_a_tool_no_server_offers_exits_1_and_says_so(atrium: Atrium) -> None:
    result = mcp(atrium, "call", "no_such_tool")

    assert result.returncode == 1
    assert "no_such_tool" in result.stderr
    assert "gone" in result.stderr  # the server it could not ask


def test_logs_view_shows_a_line_per_tool_call_from_the_audit(atrium: Atrium) -> None:
    called = mcp(atrium, "call", "atrium", "show_playbook", "name=nope")
    assert called.returncode == 1
    request_id = called.stderr.split("request id: ")[1].split()[0]

    def warning_lines() -> list[str]:
        view = atrium("infra", "logs", "view", "--level", "warning", "--since", "1h")
        return [line for line in view.stdout.splitlines() if request_id in line]

    (line,) = wait_until(warning_lines, what="the failed call in the audit", timeout_s=30)
    assert line.split()[0] == "audit"
    assert "mcp tool call atrium/show_playbook" in line
    assert "outcome=tool_error" in line
